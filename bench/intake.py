"""Scenario: the event intake's CPU per execution event, against parsing the same bytes.

The intake is what an account session does with a decoded execution event before the copy
logic sees it: the wire checks, the replay memory, the state update, the order-event note
and the ``AccountChange`` handed to the listener. Its floor is decoding the frame
(``codec.decode``: the ProtoMessage and its payload), which any copier pays.

The events are those of a master trading market orders on a hedged account: per round
trip, the open's ORDER_ACCEPTED and ORDER_FILLED (order, position, deal) and the close's
ORDER_ACCEPTED and ORDER_FILLED (the deal with its closePositionDetail, the position
closed), each with a new position and order id and a later timestamp, pre-encoded as the
server writes them. Each repeat times decoding all frames alone, then decoding and feeding
them to a fresh session (``time.perf_counter``, interleaved so that noise hits both);
reported: events/s of each, the intake's own microseconds per event (the difference), and
the ratio, median [min-max] over repeats.
"""

from __future__ import annotations

import statistics
import time
from decimal import Decimal
from typing import Any

from cmamd.accounts.model import AccountKind, SymbolSpec, TraderInfo
from cmamd.accounts.session import AccountChange, AccountSession
from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2 as m

ACCOUNT = 1001
EURUSD = SymbolSpec(1, "EURUSD", 5, 4, 10_000_000, 100_000, 100_000, 10_000_000_000)
START_MS = 1_700_000_000_000


def _trade(volume: int, at_ms: int) -> m.ProtoOATradeData:
    return m.ProtoOATradeData(
        symbolId=1, volume=volume, tradeSide=m.BUY, openTimestamp=at_ms, label="", comment=""
    )


def _order(
    order_id: int,
    position_id: int,
    status: m.ProtoOAOrderStatus,
    at_ms: int,
    closing: bool,
) -> Any:
    return m.ProtoOAOrder(
        orderId=order_id,
        tradeData=_trade(1_000_000, at_ms),
        orderType=m.MARKET,
        orderStatus=status,
        executionPrice=1.08 if status == m.ORDER_STATUS_FILLED else 0.0,
        positionId=position_id,
        utcLastUpdateTimestamp=at_ms,
        closingOrder=closing,
        clientOrderId="ctm-1",
    )


def _position(position_id: int, status: m.ProtoOAPositionStatus, volume: int, at_ms: int) -> Any:
    return m.ProtoOAPosition(
        positionId=position_id,
        tradeData=_trade(volume, at_ms),
        positionStatus=status,
        swap=0,
        price=1.08,
        stopLoss=1.07,
        takeProfit=1.09,
        utcLastUpdateTimestamp=at_ms,
        commission=-3,
        moneyDigits=2,
    )


def _deal(n: int, order_id: int, position_id: int, at_ms: int, closing: bool) -> Any:
    deal = m.ProtoOADeal(
        dealId=n,
        orderId=order_id,
        positionId=position_id,
        volume=1_000_000,
        filledVolume=1_000_000,
        symbolId=1,
        createTimestamp=at_ms,
        executionTimestamp=at_ms,
        executionPrice=1.08,
        tradeSide=m.SELL if closing else m.BUY,
        dealStatus=m.FILLED,
        moneyDigits=2,
    )
    if closing:
        deal.closePositionDetail.CopyFrom(
            m.ProtoOAClosePositionDetail(
                entryPrice=1.08, grossProfit=10, swap=0, commission=-3, balance=100_000_00
            )
        )
    return deal


def frames(round_trips: int) -> list[bytes]:
    """The encoded execution events of ``round_trips`` opens and closes."""
    out: list[bytes] = []
    at = START_MS
    for n in range(1, round_trips + 1):
        position_id, open_id, close_id = n, 2 * n, 2 * n + 1
        for order_id, closing in ((open_id, False), (close_id, True)):
            at += 1
            pos_status = m.POSITION_STATUS_CLOSED if closing else m.POSITION_STATUS_OPEN
            accepted = pb.ProtoOAExecutionEvent(
                ctidTraderAccountId=ACCOUNT,
                executionType=m.ORDER_ACCEPTED,
                order=_order(order_id, position_id, m.ORDER_STATUS_ACCEPTED, at, closing),
                position=_position(
                    position_id,
                    m.POSITION_STATUS_OPEN if closing else m.POSITION_STATUS_CREATED,
                    1_000_000 if closing else 0,
                    at,
                ),
            )
            at += 1
            filled = pb.ProtoOAExecutionEvent(
                ctidTraderAccountId=ACCOUNT,
                executionType=m.ORDER_FILLED,
                order=_order(order_id, position_id, m.ORDER_STATUS_FILLED, at, closing),
                position=_position(position_id, pos_status, 0 if closing else 1_000_000, at),
                deal=_deal(order_id, order_id, position_id, at, closing),
            )
            out += [codec.encode(accepted), codec.encode(filled)]
    return out


class _NoConnection:
    """The session only registers listeners at start(), which the benchmark never calls."""


def session(changes: list[AccountChange]) -> AccountSession:
    s = AccountSession(
        name="master",
        account_id=ACCOUNT,
        is_live=False,
        connection=_NoConnection(),  # type: ignore[arg-type]
        tokens=None,  # type: ignore[arg-type]
        on_change=changes.append,
    )
    s.state.trader = TraderInfo(ACCOUNT, Decimal("100000"), 2, AccountKind.HEDGED)
    s.state.symbols_by_id = {EURUSD.symbol_id: EURUSD}
    s.state.symbols_by_name = {EURUSD.name: EURUSD}
    return s


def _time_decode(data: list[bytes]) -> float:
    decode = codec.decode
    start = time.perf_counter()
    for frame in data:
        decode(frame)
    return time.perf_counter() - start


def _time_intake(data: list[bytes]) -> tuple[float, int]:
    changes: list[AccountChange] = []
    feed = session(changes)._on_envelope
    decode = codec.decode
    start = time.perf_counter()
    for frame in data:
        feed(decode(frame))
    return time.perf_counter() - start, len(changes)


def _spread(values: list[float], digits: int = 2) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def run(round_trips: int = 2_000, repeats: int = 7) -> dict[str, Any]:
    data = frames(round_trips)
    n = len(data)
    _time_intake(data[: min(n, 400)])  # warm-up
    floor_rate, intake_rate, own_us, ratio = [], [], [], []
    emitted = 0
    for _ in range(repeats):
        floor_s = _time_decode(data)
        intake_s, emitted = _time_intake(data)
        floor_rate.append(n / floor_s)
        intake_rate.append(n / intake_s)
        own_us.append((intake_s - floor_s) / n * 1e6)
        ratio.append(intake_s / floor_s)
    return {
        "events": n,
        "changes": emitted,
        "repeats": repeats,
        "decode_events_per_s": _spread(floor_rate, 0),
        "intake_events_per_s": _spread(intake_rate, 0),
        "intake_own_us_per_event": _spread(own_us),
        "intake_over_decode": _spread(ratio),
    }


def render(result: dict[str, Any]) -> str:
    def spread(d: dict[str, float]) -> str:
        return f"{d['median']:g} [{d['min']:g}-{d['max']:g}]"

    return "\n".join(
        [
            f"Event intake ({result['events']} execution events, {result['changes']} changes,"
            f" median [min-max] over {result['repeats']} repeats)",
            f"  decode alone       events/s  {spread(result['decode_events_per_s'])}",
            f"  decode + intake    events/s  {spread(result['intake_events_per_s'])}",
            f"  intake own         us/event  {spread(result['intake_own_us_per_event'])}",
            f"  (decode + intake) / decode   {spread(result['intake_over_decode'])}",
        ]
    )


if __name__ == "__main__":
    import sys

    trips = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    print(render(run(trips)))

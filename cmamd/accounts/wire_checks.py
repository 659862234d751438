"""Sanity checks on positions, orders and deals from the wire, before they touch state.

The server is trusted to speak the protocol, not to send sensible numbers: a corrupted or
hostile frame can carry a volume of 2^62, a NaN price or a negative id, and the copy logic
would size, round and label with them (a 1 000-lot copy, a crash in Decimal, a key that
no label can hold). Each check returns what is wrong, or None; the session drops an item
that fails (one error line, bounded by ``DropLog``) and keeps what it knew before.

Bounds, and why:
- ids (position, order, deal, symbol) are positive: the server numbers from 1, and a key
  such as ``p-5`` fits no label.
- volumes: an order or deal 0 < volume <= the symbol's maxVolume; a position (and a
  closing order) up to ``POSITION_VOLUME_FACTOR`` x maxVolume (a netted position sums
  orders each within it), 0 allowed once closed; never above ``MAX_VOLUME``.
- prices, SL/TP: finite, 0 <= price <= ``MAX_PRICE`` (the planner rounds them in Decimal).
- timestamps: 0 (absent) up to ``MAX_TIMESTAMP_MS``; negative or far-future is corrupt.
- the symbol is in the account's catalogue; the side is buy or sell.

Replays are refused too (``WireGuard``): position and order ids are never reused, so an
event reopening a position seen closed, or putting back on the book an order seen ended,
is an old event; so is one older (``utcLastUpdateTimestamp``) than the item held.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message

from cmamd.accounts import convert
from cmamd.accounts.model import AccountState, PendingOrder, Position, SymbolSpec
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

MAX_PRICE = 1e12
MAX_VOLUME = 10**15  # cents of a unit: 10^13 units, far above any broker's maxVolume
POSITION_VOLUME_FACTOR = 100
MAX_TIMESTAMP_MS = 7_258_118_400_000  # 2200-01-01
MAX_MONEY_DIGITS = 10

Symbols = Mapping[int, SymbolSpec]


# -- single values --------------------------------------------------------------------------


def _id_problem(what: str, value: int) -> str | None:
    return None if value > 0 else f"{what} {value} is not a positive id"


def _price_problem(what: str, value: float | None) -> str | None:
    if value is None:
        return None
    if not math.isfinite(value) or not 0 <= value <= MAX_PRICE:
        return f"{what} {value!r} is not a price"
    return None


def _timestamp_problem(what: str, value: int | None) -> str | None:
    if value is None:
        return None
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        return f"{what} {value} is not a plausible time in ms"
    return None


def _volume_problem(what: str, volume: int, limit: int, *, zero_ok: bool = False) -> str | None:
    low_ok = volume >= 0 if zero_ok else volume > 0
    if not low_ok or volume > min(limit, MAX_VOLUME):
        return f"{what} {volume} is outside 0..{min(limit, MAX_VOLUME)}"
    return None


def _symbol(symbols: Symbols, symbol_id: int) -> tuple[SymbolSpec | None, str | None]:
    spec = symbols.get(symbol_id)
    if spec is None:
        return None, f"symbol id {symbol_id} is not in the account's catalogue"
    return spec, None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p is not None), None)


# -- models (what the planner is given) -----------------------------------------------------


def position_problem(
    pos: Position, symbols: Symbols, *, open_: bool = True, known_symbol: bool = True
) -> str | None:
    """What is wrong with a position (``open_``: an open one must have a volume;
    ``known_symbol``: its symbol must be in ``symbols``)."""
    spec, unknown = _symbol(symbols, pos.symbol_id)
    return _first(
        _id_problem("position id", pos.position_id),
        unknown if known_symbol else None,
        _volume_problem(
            "position volume",
            pos.volume,
            _max(spec) * POSITION_VOLUME_FACTOR if spec is not None else MAX_VOLUME,
            zero_ok=not open_,
        ),
        _price_problem("entry price", pos.entry_price),
        _price_problem("stop loss", pos.stop_loss),
        _price_problem("take profit", pos.take_profit),
        _timestamp_problem("open time", pos.open_ms),
        _timestamp_problem("update time", pos.updated_ms),
    )


def order_problem(
    order: PendingOrder, symbols: Symbols, *, known_symbol: bool = True, volume_factor: int = 1
) -> str | None:
    """What is wrong with an order (``volume_factor``: a closing order may close a netted
    position, which may be larger than one order)."""
    spec, unknown = _symbol(symbols, order.symbol_id)
    return _first(
        _id_problem("order id", order.order_id),
        unknown if known_symbol else None,
        _id_problem("position id", order.position_id) if order.position_id is not None else None,
        _volume_problem(
            "order volume", order.volume, (_max(spec) if spec else MAX_VOLUME) * volume_factor
        ),
        _price_problem("limit price", order.limit_price),
        _price_problem("stop price", order.stop_price),
        _price_problem("stop loss", order.stop_loss),
        _price_problem("take profit", order.take_profit),
        _timestamp_problem("expiration", order.expiration_ms),
        _timestamp_problem("update time", order.updated_ms),
    )


def _max(spec: SymbolSpec) -> int:
    return spec.max_volume if spec.max_volume > 0 else MAX_VOLUME


# -- protobuf (what the server sent) --------------------------------------------------------


# Before the catalogue is loaded (events between the account's auth and its first
# reconcile, which replaces them anyway) "known symbol" cannot be checked; the rest can.


def pb_position_problem(pos: model_pb2.ProtoOAPosition, symbols: Symbols) -> str | None:
    if pos.tradeData.tradeSide not in convert.SIDES:
        return f"position {pos.positionId}: trade side {pos.tradeData.tradeSide} is not buy/sell"
    is_open = pos.positionStatus == model_pb2.POSITION_STATUS_OPEN
    problem = position_problem(
        convert.position(pos), symbols, open_=is_open, known_symbol=bool(symbols)
    )
    return None if problem is None else f"position {pos.positionId}: {problem}"


def pb_order_problem(order: model_pb2.ProtoOAOrder, symbols: Symbols) -> str | None:
    if order.tradeData.tradeSide not in convert.SIDES:
        return f"order {order.orderId}: trade side {order.tradeData.tradeSide} is not buy/sell"
    problem = order_problem(
        convert.pending_order(order),
        symbols,
        known_symbol=bool(symbols),
        volume_factor=POSITION_VOLUME_FACTOR if order.closingOrder else 1,
    ) or _first(
        _price_problem("execution price", order.executionPrice)
        if order.HasField("executionPrice")
        else None,
    )
    return None if problem is None else f"order {order.orderId}: {problem}"


def pb_deal_problem(deal: model_pb2.ProtoOADeal, symbols: Symbols) -> str | None:
    spec, unknown = _symbol(symbols, deal.symbolId)
    detail = deal.closePositionDetail if deal.HasField("closePositionDetail") else None
    problem = _first(
        _id_problem("deal id", deal.dealId),
        _id_problem("order id", deal.orderId),
        _id_problem("position id", deal.positionId),
        unknown if symbols else None,
        _volume_problem("deal volume", deal.volume, _max(spec) if spec else MAX_VOLUME),
        _volume_problem(
            "filled volume", deal.filledVolume, _max(spec) if spec else MAX_VOLUME, zero_ok=True
        ),
        _price_problem("execution price", deal.executionPrice)
        if deal.HasField("executionPrice")
        else None,
        _timestamp_problem("create time", deal.createTimestamp),
        _timestamp_problem("execution time", deal.executionTimestamp),
        _money_digits_problem(deal.moneyDigits) if deal.HasField("moneyDigits") else None,
        _money_digits_problem(detail.moneyDigits)
        if detail is not None and detail.HasField("moneyDigits")
        else None,
    )
    return None if problem is None else f"deal {deal.dealId}: {problem}"


def _money_digits_problem(digits: int) -> str | None:
    if not 0 <= digits <= MAX_MONEY_DIGITS:
        return f"money digits {digits} outside 0..{MAX_MONEY_DIGITS}"
    return None


def execution_problem(event: pb.ProtoOAExecutionEvent, symbols: Symbols) -> str | None:
    """What is wrong with an execution event; one bad part makes the whole event untrusted."""
    return _first(
        pb_position_problem(event.position, symbols) if event.HasField("position") else None,
        pb_order_problem(event.order, symbols) if event.HasField("order") else None,
        pb_deal_problem(event.deal, symbols) if event.HasField("deal") else None,
    )


# -- replays ---------------------------------------------------------------------------------


def replay_problem(
    event: pb.ProtoOAExecutionEvent,
    state: AccountState,
    ended_positions: Collection[int],
    ended_orders: Collection[int],
) -> str | None:
    """Why the event is an old one played again (ids are never reused), or None."""
    if event.HasField("position"):
        pos = event.position
        if pos.positionId in ended_positions and pos.positionStatus != (
            model_pb2.POSITION_STATUS_CLOSED
        ):
            return f"position {pos.positionId} was closed before: a replayed event"
        held = state.positions.get(pos.positionId)
        if held is not None and 0 < pos.utcLastUpdateTimestamp < held.updated_ms:
            return f"position {pos.positionId}: older than the state held (a replayed event)"
    if event.HasField("order"):
        order = event.order
        if order.orderId in ended_orders and order.orderStatus == model_pb2.ORDER_STATUS_ACCEPTED:
            return f"order {order.orderId} ended before: a replayed event"
        resting = state.orders.get(order.orderId)
        if resting is not None and 0 < order.utcLastUpdateTimestamp < resting.updated_ms:
            return f"order {order.orderId}: older than the state held (a replayed event)"
    return None


ENDED_ORDER_STATUSES = frozenset(
    {
        model_pb2.ORDER_STATUS_FILLED,
        model_pb2.ORDER_STATUS_REJECTED,
        model_pb2.ORDER_STATUS_EXPIRED,
        model_pb2.ORDER_STATUS_CANCELLED,
    }
)
MAX_ENDED_IDS = 50_000  # ids remembered as ended, per kind: replays are of recent events


class _RecentIds:
    """A bounded set of ids, oldest forgotten first."""

    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._limit = limit

    def add(self, value: int) -> None:
        self._ids[value] = None
        self._ids.move_to_end(value)
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def __contains__(self, value: object) -> bool:
        return value in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)


# -- applying the checks --------------------------------------------------------------------


class WireGuard:
    """One account's gate for wire data: checks, replay memory, bounded error lines."""

    def __init__(self, log: Any, *, ended_limit: int = MAX_ENDED_IDS) -> None:
        self.drops = DropLog(log)
        self.ended_positions = _RecentIds(ended_limit)
        self.ended_orders = _RecentIds(ended_limit)

    def execution_refused(self, event: pb.ProtoOAExecutionEvent, state: AccountState) -> bool:
        """True when the event must not be applied (it was reported); else remembers what
        it ends."""
        problem = execution_problem(event, state.symbols_by_id) or replay_problem(
            event, state, self.ended_positions, self.ended_orders
        )
        if problem is not None:
            self.drops.drop("execution event", problem)
            return True
        closed = model_pb2.POSITION_STATUS_CLOSED
        if event.HasField("position") and event.position.positionStatus == closed:
            self.ended_positions.add(event.position.positionId)
        if event.HasField("order") and event.order.orderStatus in ENDED_ORDER_STATUSES:
            self.ended_orders.add(event.order.orderId)
        return False

    def clean_reconcile(self, res: pb.ProtoOAReconcileRes, state: AccountState) -> None:
        """``sanitise_reconcile``, and what the account held but no longer holds has ended."""
        sanitise_reconcile(res, state, self.drops)
        open_now = {p.positionId for p in res.position}
        for position_id in state.positions.keys() - open_now:
            self.ended_positions.add(position_id)
        resting_now = {o.orderId for o in res.order}
        for order_id in state.orders.keys() - resting_now:
            self.ended_orders.add(order_id)


def sanitise_reconcile(res: pb.ProtoOAReconcileRes, state: AccountState, drops: DropLog) -> None:
    """Make ``res`` safe to apply, in place: a bad item is replaced by what the account
    held for that id before, or left out when nothing was known about it.

    Keeping the old item rather than losing it matters: a master position that vanished
    would close its copies, a follower copy that vanished would be opened again.
    """
    symbols = state.symbols_by_id
    position_problems = [pb_position_problem(p, symbols) for p in res.position]
    order_problems = [pb_order_problem(o, symbols) for o in res.order]
    if not any(position_problems) and not any(order_problems):
        return
    positions: list[model_pb2.ProtoOAPosition] = []
    for pos, problem in zip(res.position, position_problems, strict=True):
        if problem is None:
            positions.append(_copy(pos, model_pb2.ProtoOAPosition()))
            continue
        drops.drop("reconciled position", problem)
        if pos.positionId in state.positions:
            positions.append(position_to_pb(state.positions[pos.positionId]))
    orders: list[model_pb2.ProtoOAOrder] = []
    for order, problem in zip(res.order, order_problems, strict=True):
        if problem is None:
            orders.append(_copy(order, model_pb2.ProtoOAOrder()))
            continue
        drops.drop("reconciled order", problem)
        if order.orderId in state.orders:
            orders.append(pending_order_to_pb(state.orders[order.orderId]))
    del res.position[:]
    res.position.extend(positions)
    del res.order[:]
    res.order.extend(orders)


_M = TypeVar("_M", bound=Message)


def _copy(source: _M, target: _M) -> _M:
    target.CopyFrom(source)
    return target


def position_to_pb(pos: Position) -> model_pb2.ProtoOAPosition:
    """The inverse of ``convert.position`` for an open position."""
    message = model_pb2.ProtoOAPosition(
        positionId=pos.position_id,
        tradeData=model_pb2.ProtoOATradeData(
            symbolId=pos.symbol_id,
            volume=pos.volume,
            tradeSide=convert.SIDE_TO_PB[pos.side],
            openTimestamp=pos.open_ms,
            label=pos.label,
            comment=pos.comment,
        ),
        positionStatus=model_pb2.POSITION_STATUS_OPEN,
        swap=pos.swap,
        price=pos.entry_price,
        utcLastUpdateTimestamp=pos.updated_ms,
        commission=pos.commission,
    )
    if pos.stop_loss is not None:
        message.stopLoss = pos.stop_loss
    if pos.take_profit is not None:
        message.takeProfit = pos.take_profit
    return message


def pending_order_to_pb(order: PendingOrder) -> model_pb2.ProtoOAOrder:
    """The inverse of ``convert.pending_order`` for an order resting on the book."""
    message = model_pb2.ProtoOAOrder(
        orderId=order.order_id,
        tradeData=model_pb2.ProtoOATradeData(
            symbolId=order.symbol_id,
            volume=order.volume,
            tradeSide=convert.SIDE_TO_PB[order.side],
            label=order.label,
        ),
        orderType=convert.ORDER_KIND_TO_PB[order.kind],
        orderStatus=model_pb2.ORDER_STATUS_ACCEPTED,
        clientOrderId=order.client_order_id,
        utcLastUpdateTimestamp=order.updated_ms,
    )
    for name, value in (
        ("limitPrice", order.limit_price),
        ("stopPrice", order.stop_price),
        ("stopLoss", order.stop_loss),
        ("takeProfit", order.take_profit),
        ("expirationTimestamp", order.expiration_ms),
        ("positionId", order.position_id),
    ):
        if value is not None:
            setattr(message, name, value)
    return message


class DropLog:
    """One error line per dropped item, at most ``burst`` per ``interval_s``; beyond that
    the drops are counted and one summary line says how many (a flood of bad frames must
    not flood the journal, whose rate limit would then drop the daemon's real lines)."""

    def __init__(
        self,
        log: Any,
        *,
        burst: int = 5,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._burst = burst
        self._interval_s = interval_s
        self._clock = clock
        self._window_start = -math.inf
        self._lines = 0
        self.suppressed = 0
        self.total = 0
        self._flush_scheduled = False

    def drop(self, what: str, problem: str) -> None:
        self.total += 1
        now = self._clock()
        if now - self._window_start >= self._interval_s:
            self.flush()
            self._window_start, self._lines = now, 0
        if self._lines < self._burst:
            self._lines += 1
            self._log.error("invalid data from the server dropped", item=what, problem=problem)
            return
        self.suppressed += 1
        self._schedule_flush()

    def flush(self) -> None:
        """Report the drops not logged one by one since the last report."""
        self._flush_scheduled = False
        if self.suppressed:
            self._log.error(
                "more invalid data from the server dropped",
                count=self.suppressed,
                interval_s=self._interval_s,
            )
            self.suppressed = 0

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test): the next drop after the interval reports them
        self._flush_scheduled = True
        loop.call_later(self._interval_s, self.flush)

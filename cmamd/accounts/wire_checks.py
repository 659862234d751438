"""Sanity checks on positions, orders and deals from the wire, before they touch state.

The server is trusted to speak the protocol, not to send sensible numbers: a corrupted or
hostile frame can carry a volume of 2^62, a NaN price or a negative id, and the copy logic
would size, round and label with them (a 1 000-lot copy, a crash in Decimal, a key that
no label can hold). Each check returns what is wrong, or None; the session drops an item
that fails (``cmamd.accounts.wire_guard``: one error line, bounded) and keeps what it knew
before.

Bounds, and why:
- ids (position, order, deal, symbol) are positive: the server numbers from 1, and a key
  such as ``p-5`` fits no label.
- volumes: an order or deal 0 < volume <= the symbol's maxVolume; a position (and a
  closing order) up to ``POSITION_VOLUME_FACTOR`` x maxVolume (a netted position sums
  orders each within it), 0 allowed once closed; never above ``MAX_VOLUME``.
- prices, SL/TP: finite, 0 <= price <= ``MAX_PRICE`` (the planner rounds them in Decimal).
- timestamps: 0 (absent) up to ``MAX_TIMESTAMP_MS``; negative or far-future is corrupt.
- the symbol is in the account's catalogue; the side is buy or sell.

Replays too (``replay_problem``; ``wire_guard.WireGuard`` remembers what ended): position
and order ids are never reused, so an event reopening a position seen closed, or putting
back on the book an order seen ended, is an old event; so is one older
(``utcLastUpdateTimestamp``) than the item held.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

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
    if plainly_sound(event, symbols):
        return None
    return full_execution_problem(event, symbols)


def full_execution_problem(event: pb.ProtoOAExecutionEvent, symbols: Symbols) -> str | None:
    """:func:`execution_problem` without the fast path (named problems for every field)."""
    return _first(
        pb_position_problem(event.position, symbols) if event.HasField("position") else None,
        pb_order_problem(event.order, symbols) if event.HasField("order") else None,
        pb_deal_problem(event.deal, symbols) if event.HasField("deal") else None,
    )


# -- the fast path ---------------------------------------------------------------------------
#
# Every execution event passes the checks above on the copy path; building the models and
# the problem strings costs more than the checks. ``plainly_sound`` reads the raw fields once
# and answers True only when every check above would find nothing: it may be stricter (then
# the full checks decide), never looser (tests/unit/test_unit_wire_checks.py holds it to
# that on mutated events). A price, SL/TP or time field that is absent reads as 0, which the
# full checks accept too; ``0.0 <= x <= MAX`` is False for NaN and infinities.


def _limit(symbols: Symbols, symbol_id: int, factor: int) -> int:
    """The volume ceiling; -1 (nothing fits) for a symbol missing from a loaded catalogue."""
    spec = symbols.get(symbol_id)
    if spec is None:
        return -1 if symbols else MAX_VOLUME
    return min(_max(spec) * factor, MAX_VOLUME)


def _position_sound(pos: model_pb2.ProtoOAPosition, symbols: Symbols) -> bool:
    trade = pos.tradeData
    floor = 1 if pos.positionStatus == model_pb2.POSITION_STATUS_OPEN else 0
    return (
        trade.tradeSide in convert.SIDES
        and pos.positionId > 0
        and floor <= trade.volume <= _limit(symbols, trade.symbolId, POSITION_VOLUME_FACTOR)
        and 0.0 <= pos.price <= MAX_PRICE
        and 0.0 <= pos.stopLoss <= MAX_PRICE
        and 0.0 <= pos.takeProfit <= MAX_PRICE
        and 0 <= trade.openTimestamp <= MAX_TIMESTAMP_MS
        and 0 <= pos.utcLastUpdateTimestamp <= MAX_TIMESTAMP_MS
    )


def _order_sound(order: model_pb2.ProtoOAOrder, symbols: Symbols) -> bool:
    trade = order.tradeData
    factor = POSITION_VOLUME_FACTOR if order.closingOrder else 1
    return (
        trade.tradeSide in convert.SIDES
        and order.orderId > 0
        and (order.positionId > 0 or not order.HasField("positionId"))
        and 1 <= trade.volume <= _limit(symbols, trade.symbolId, factor)
        and 0.0 <= order.limitPrice <= MAX_PRICE
        and 0.0 <= order.stopPrice <= MAX_PRICE
        and 0.0 <= order.stopLoss <= MAX_PRICE
        and 0.0 <= order.takeProfit <= MAX_PRICE
        and 0.0 <= order.executionPrice <= MAX_PRICE
        and 0 <= order.expirationTimestamp <= MAX_TIMESTAMP_MS
        and 0 <= order.utcLastUpdateTimestamp <= MAX_TIMESTAMP_MS
    )


def _deal_sound(deal: model_pb2.ProtoOADeal, symbols: Symbols) -> bool:
    limit = _limit(symbols, deal.symbolId, 1)
    return (
        deal.dealId > 0
        and deal.orderId > 0
        and deal.positionId > 0
        and 1 <= deal.volume <= limit
        and 0 <= deal.filledVolume <= limit
        and 0.0 <= deal.executionPrice <= MAX_PRICE
        and 0 <= deal.createTimestamp <= MAX_TIMESTAMP_MS
        and 0 <= deal.executionTimestamp <= MAX_TIMESTAMP_MS
        and 0 <= deal.moneyDigits <= MAX_MONEY_DIGITS
        and 0 <= deal.closePositionDetail.moneyDigits <= MAX_MONEY_DIGITS
    )


def plainly_sound(event: pb.ProtoOAExecutionEvent, symbols: Symbols) -> bool:
    """True only if :func:`full_execution_problem` would find nothing."""
    return (
        (not event.HasField("position") or _position_sound(event.position, symbols))
        and (not event.HasField("order") or _order_sound(event.order, symbols))
        and (not event.HasField("deal") or _deal_sound(event.deal, symbols))
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

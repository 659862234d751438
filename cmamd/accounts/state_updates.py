"""How an execution event and a reconcile reply change an account's cached state (pure).

No I/O and no session: the session checks the message (``wire_guard``), applies it here,
and reports the keys this returns. ``apply_execution`` runs for every event on the copy
path, so it does only what the event changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from cmamd.accounts import convert, merge
from cmamd.accounts.model import AccountState
from cmamd.item_keys import ItemKind, ids_of, order_key, position_key
from cmamd.protocol import units
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

POSITION_ENDED = frozenset({model_pb2.POSITION_STATUS_CLOSED, model_pb2.POSITION_STATUS_ERROR})
ORDER_WITHDRAWN = frozenset({model_pb2.ORDER_CANCELLED, model_pb2.ORDER_EXPIRED})


class EventEffect(NamedTuple):
    """What one execution event changed: the item keys, and the facts the copy logic needs.

    A NamedTuple, not a frozen dataclass: made for every event, it costs a tuple. Its parts
    are shared and read-only (the empty ones are constants, not built per event)."""

    keys: frozenset[str]
    origins: Mapping[str, str]  # "p<pos>" -> "o<order>": the pending order that opened it
    reducing: frozenset[str]  # keys whose change reduces risk: copied first


NO_ORIGINS: Mapping[str, str] = MappingProxyType({})
NOTHING: frozenset[str] = frozenset()
NO_EFFECT = EventEffect(NOTHING, NO_ORIGINS, NOTHING)
_OPEN = model_pb2.POSITION_STATUS_OPEN
_FILLED = model_pb2.ORDER_FILLED


def apply_execution(state: AccountState, event: pb.ProtoOAExecutionEvent) -> EventEffect:
    """Apply an execution event already checked by ``wire_guard`` (stale and replayed
    events never reach this).

    On the copy path for every event: each part is read once and the effect is built
    from at most two keys, without intermediate sets."""
    has = event.HasField
    has_position = has("position")
    position_id = 0
    pkey = okey = ""
    p_reducing = o_reducing = False
    if has_position:
        pos = event.position
        position_id = pos.positionId
        status = pos.positionStatus
        if status == _OPEN:
            before = state.positions.get(position_id)
            after = state.positions[position_id] = convert.position(pos)
            pkey = position_key(position_id)
            p_reducing = before is not None and after.volume < before.volume  # a partial close
        elif status in POSITION_ENDED:
            state.positions.pop(position_id, None)
            pkey = position_key(position_id)
            p_reducing = True
    origins = NO_ORIGINS
    if has("order"):
        order = event.order
        order_id = order.orderId
        if convert.is_resting(order):
            state.orders[order_id] = convert.pending_order(order)
            okey = order_key(order_id)
        elif state.orders.pop(order_id, None) is not None:
            okey = order_key(order_id)
            o_reducing = event.executionType in ORDER_WITHDRAWN
        if (
            has_position
            and event.executionType == _FILLED
            and order.orderType in (convert.PENDING_KINDS)
        ):
            origins = {position_key(position_id): order_key(order_id)}
    if has("deal"):
        deal = event.deal
        if deal.HasField("closePositionDetail"):
            _apply_balance(state, deal.closePositionDetail)
    if pkey:
        if okey:
            return EventEffect(
                frozenset((pkey, okey)),
                origins,
                frozenset(k for k, r in ((pkey, p_reducing), (okey, o_reducing)) if r),
            )
        return EventEffect(
            frozenset((pkey,)), origins, frozenset((pkey,)) if p_reducing else NOTHING
        )
    if okey:
        return EventEffect(
            frozenset((okey,)), origins, frozenset((okey,)) if o_reducing else NOTHING
        )
    return NO_EFFECT


def _apply_balance(state: AccountState, detail: model_pb2.ProtoOAClosePositionDetail) -> None:
    trader = state.trader
    if trader is not None:
        digits = detail.moneyDigits if detail.HasField("moneyDigits") else trader.money_digits
        state.trader = trader.with_balance(units.money(detail.balance, digits))


def apply_reconcile(
    state: AccountState, reply: pb.ProtoOAReconcileRes, changed: Iterable[str]
) -> frozenset[str]:
    """Take the server's positions and orders, merged with the items events ``changed``
    while the request was in flight (merge.py); returns every key present before or after."""
    changed = set(changed)
    positions = {p.positionId: convert.position(p) for p in reply.position}
    orders = {o.orderId: convert.pending_order(o) for o in reply.order if convert.is_resting(o)}
    positions = merge.merge_snapshot(state.positions, positions, ids_of(changed, ItemKind.POSITION))
    orders = merge.merge_snapshot(state.orders, orders, ids_of(changed, ItemKind.ORDER))
    touched = frozenset(
        {position_key(i) for i in positions}
        | {position_key(i) for i in state.positions}
        | {order_key(i) for i in orders}
        | {order_key(i) for i in state.orders}
    )
    state.positions = positions
    state.orders = orders
    return touched

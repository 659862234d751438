"""How an execution event and a reconcile reply change an account's cached state (pure).

No I/O and no session: the session checks the message (``wire_guard``), applies it here,
and reports the keys this returns. ``apply_execution`` runs for every event on the copy
path, so it does only what the event changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
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

    A NamedTuple, not a frozen dataclass: made for every event, it costs a tuple."""

    keys: frozenset[str]
    origins: dict[str, str]  # "p<pos>" -> "o<order>": the pending order that opened it
    reducing: frozenset[str]  # keys whose change reduces risk: copied first


NO_EFFECT = EventEffect(frozenset(), {}, frozenset())


def apply_execution(state: AccountState, event: pb.ProtoOAExecutionEvent) -> EventEffect:
    """Apply an execution event already checked by ``wire_guard`` (stale and replayed
    events never reach this)."""
    keys: set[str] = set()
    origins: dict[str, str] = {}
    reducing: set[str] = set()
    if event.HasField("position"):
        pos = event.position
        key = position_key(pos.positionId)
        if pos.positionStatus == model_pb2.POSITION_STATUS_OPEN:
            before = state.positions.get(pos.positionId)
            after = state.positions[pos.positionId] = convert.position(pos)
            keys.add(key)
            if before is not None and after.volume < before.volume:
                reducing.add(key)  # a partial close
        elif pos.positionStatus in POSITION_ENDED:
            state.positions.pop(pos.positionId, None)
            keys.add(key)
            reducing.add(key)
    if event.HasField("order"):
        order = event.order
        key = order_key(order.orderId)
        if convert.is_resting(order):
            state.orders[order.orderId] = convert.pending_order(order)
            keys.add(key)
        elif state.orders.pop(order.orderId, None) is not None:
            keys.add(key)
            if event.executionType in ORDER_WITHDRAWN:
                reducing.add(key)
        if (
            event.executionType == model_pb2.ORDER_FILLED
            and order.orderType in convert.PENDING_KINDS
            and event.HasField("position")
        ):
            origins[position_key(event.position.positionId)] = key
    if event.HasField("deal") and event.deal.HasField("closePositionDetail"):
        _apply_balance(state, event.deal.closePositionDetail)
    if not keys:
        return NO_EFFECT
    return EventEffect(frozenset(keys), origins, frozenset(reducing))


def _apply_balance(state: AccountState, detail: model_pb2.ProtoOAClosePositionDetail) -> None:
    trader = state.trader
    if trader is not None:
        digits = detail.moneyDigits if detail.HasField("moneyDigits") else trader.money_digits
        state.trader = replace(trader, balance=units.money(detail.balance, digits))


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

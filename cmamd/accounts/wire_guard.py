"""One account's gate for data from the wire: ``wire_checks`` applied, replays
remembered, a bad reconcile item replaced by what was known, error lines bounded.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.protobuf.message import Message

from cmamd.accounts import convert
from cmamd.accounts.model import AccountState, PendingOrder, Position
from cmamd.accounts.wire_checks import (
    execution_problem,
    pb_order_problem,
    pb_position_problem,
    replay_problem,
)
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

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

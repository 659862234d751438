"""The last execution events of an account's orders, for those waiting on one.

A copy is sent and then waited for: its completing event may arrive before the wait
begins, so the last few hundred order events are remembered (type, and the broker's error
code of a rejection), and a waiter is woken by the event it waits for.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable

RECENT_ORDER_EVENTS = 512


class OrderEvents:
    def __init__(self, keep: int = RECENT_ORDER_EVENTS) -> None:
        self._keep = keep
        self._recent: OrderedDict[int, int] = OrderedDict()  # order id -> execution type
        self._errors: dict[int, str] = {}
        self._waiters: dict[int, list[tuple[frozenset[int], asyncio.Future[int]]]] = {}

    def note(self, order_id: int, execution_type: int, error_code: str = "") -> None:
        if error_code:  # the broker's reason, for an order accepted and then rejected
            self._errors[order_id] = error_code
            while len(self._errors) > self._keep:
                del self._errors[next(iter(self._errors))]
        self._recent[order_id] = execution_type
        self._recent.move_to_end(order_id)
        while len(self._recent) > self._keep:
            self._recent.popitem(last=False)
        waiters = self._waiters.get(order_id)
        if waiters:
            for wanted, future in waiters:
                if execution_type in wanted and not future.done():
                    future.set_result(execution_type)

    def error_of(self, order_id: int) -> str:
        """The error code of the order's last rejection event ("" if none was seen)."""
        return self._errors.get(order_id, "")

    async def wait_for(self, order_id: int, outcomes: Iterable[int], timeout: float) -> int:
        """Wait for an event of ``order_id`` whose type is in ``outcomes`` (or was the last)."""
        wanted = frozenset(outcomes)
        seen = self._recent.get(order_id)
        if seen in wanted:
            return seen
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(order_id, []).append((wanted, future))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._waiters.get(order_id, [])
            waiters[:] = [w for w in waiters if w[1] is not future]
            if not waiters:
                self._waiters.pop(order_id, None)

"""Start-up work that the accounts of one connection share: admission, and the broker's lists.

Admission: bringing an account up is a short chain of requests, one at a time. If every
account starts its chain at once, a connection carrying hundreds of accounts queues more
requests than its budget (``max_rps``) can send within the request timeout; the queued ones
fail with SendTimeout, their retries queue again, and start-up never completes. So only as
many accounts bring themselves up at once as keep the queue within half of what the budget
serves in one request timeout; the other half is room for the copy path and session traffic,
which outrank start-up queries in the throttle anyway.

Broker-wide lists: the asset list and the light symbol list are the broker's, the same for
every account of that broker, so one connection fetches them once per broker and every
account of the broker shares the answer (a failed fetch is not cached: the next asks again).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from cmamd.accounts.catalogue import BrokerLists

ADMISSION_SHARE = 0.5
"""Share of what the budget sends within one request timeout that start-up may keep queued."""
DEFAULT_MAX_RPS = 50
DEFAULT_REQUEST_TIMEOUT_S = 10.0


def admission_capacity(max_rps: int, request_timeout_s: float) -> int:
    """How many accounts of one connection may be bringing themselves up at once.

    Each has at most one start-up request queued at a time, so this bounds the queue: the
    last of them waits at most ``ADMISSION_SHARE`` of the request timeout for the budget.
    """
    return max(1, int(max_rps * request_timeout_s * ADMISSION_SHARE))


class ConnectionStartup:
    def __init__(self, max_rps: int, request_timeout_s: float) -> None:
        self.capacity = admission_capacity(max_rps, request_timeout_s)
        self._slots = asyncio.Semaphore(self.capacity)
        self._lists: dict[str, asyncio.Future[BrokerLists]] = {}
        self.admitted_now = 0
        self.lists_fetched = 0

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one of the connection's start-up places for the duration of the block."""
        async with self._slots:
            self.admitted_now += 1
            try:
                yield
            finally:
                self.admitted_now -= 1

    async def broker_lists(
        self, broker: str, fetch: Callable[[], Awaitable[BrokerLists]]
    ) -> BrokerLists:
        """The broker's lists, fetched by the first account that asks; shared afterwards."""
        if not broker:  # nothing tells brokers apart: do not share
            return await fetch()
        future = self._lists.get(broker)
        if future is None:
            future = self._lists[broker] = asyncio.ensure_future(self._fetch(fetch))
        try:
            # shielded: one waiter giving up must not cancel the fetch the others await
            return await asyncio.shield(future)
        except Exception:
            if self._lists.get(broker) is future:
                del self._lists[broker]
            raise

    async def _fetch(self, fetch: Callable[[], Awaitable[BrokerLists]]) -> BrokerLists:
        lists = await fetch()
        self.lists_fetched += 1
        return lists


_BY_CONNECTION: weakref.WeakKeyDictionary[Any, ConnectionStartup] = weakref.WeakKeyDictionary()


def startup_for(connection: Any) -> ConnectionStartup:
    """The start-up state shared by the accounts of ``connection`` (created on first use)."""
    startup = _BY_CONNECTION.get(connection)
    if startup is None:
        startup = ConnectionStartup(
            getattr(connection, "max_rps", DEFAULT_MAX_RPS),
            getattr(connection, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S),
        )
        _BY_CONNECTION[connection] = startup
    return startup

"""A state store that cannot be written (disk full, I/O error) is a daemon-level fault.

Every order is journaled before it is sent, so a failed write means the copy was not
sent. It must not be dropped: the item is planned again, with a growing pause, until the
store takes writes again, and meanwhile the fault is shown in STATUS= and logged at error
(once per failing item and pause, not once per attempt of every worker).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

from cmamd.logs import get_logger
from cmamd.state.store import StateError

log = get_logger("cmamd.replication.store")

# Not OSError: TimeoutError and ConnectionError are OSErrors too, and they are the
# network's. sqlite reports a full disk or an I/O error as sqlite3.OperationalError.
STORE_ERRORS = (sqlite3.Error, StateError)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0

WorkKey = tuple[str, int, str]


def is_store_error(exc: BaseException) -> bool:
    return isinstance(exc, STORE_ERRORS)


class StoreFault:
    def __init__(self, requeue: Callable[[WorkKey], None]) -> None:
        self.active: str | None = None
        """What the last failed write said, while the store is failing."""
        self._requeue = requeue
        self._failed: set[WorkKey] = set()
        self._next_s = RETRY_FIRST_S

    def failed(self, work: WorkKey, exc: BaseException) -> None:
        """``work`` hit a store error: plan it again after a pause."""
        self.active = f"{type(exc).__name__}: {exc}"
        self._failed.add(work)
        delay = self._next_s
        self._next_s = min(self._next_s * 2, RETRY_MAX_S)
        log.error(
            "state store write failed",
            next="the item is planned again once the store works",
            error=self.active,
            rule_follower_key=list(work),
            in_s=delay,
        )
        asyncio.get_running_loop().call_later(delay, self._requeue, work)

    def succeeded(self, work: WorkKey) -> None:
        """``work`` went through: when nothing else is failing, the fault is over."""
        if work not in self._failed:
            return
        self._failed.discard(work)
        if not self._failed and self.active is not None:
            log.warning("state store writes work again", after=self.active)
            self.active = None
            self._next_s = RETRY_FIRST_S


def requeue_into(queue_push: Callable[..., None]) -> Callable[[WorkKey], None]:
    def requeue(work: WorkKey) -> None:
        queue_push(work, at=time.monotonic(), urgent=True)

    return requeue

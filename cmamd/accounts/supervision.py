"""Keeping an account's background work alive: retry pacing and the fate of every task.

An account's start-up, recovery and periodic work run as background tasks; none may end
unnoticed. A task that dies of an unexpected exception is logged at error with the account
(the logger is bound to it) and the recovery loop retries with a growing pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0

Spawn = Callable[[Any], asyncio.Task[Any]]
"""Starts a coroutine as one of the account's tasks (``AccountSession._spawn``)."""


class RetryPacing:
    """1, 2, 4 ... 60 s between attempts; ``reset`` after a success."""

    def __init__(self, first_s: float = RETRY_FIRST_S, max_s: float = RETRY_MAX_S) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._next_s = first_s

    def next_delay(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self._first_s


def report_task_end(log: Any) -> Any:
    """A done-callback that logs a task's unexpected death at error (never lost)."""

    def on_done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error(
                "account task died",
                task=task.get_name(),
                error=repr(error),
                exc_info=error,
            )

    return on_done

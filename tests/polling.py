"""Waiting on a condition in a test: poll it against a deadline, never a bare sleep.

The one polling loop of the test suite: a test that waits for something the code does on its
own (a copy landing, a session becoming ready) states the condition and how long it may take;
under load it waits longer, never fails sooner, and a condition that never holds fails the test
with what was awaited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def first_value(
    probe: Callable[[], T | None], timeout_s: float, interval_s: float
) -> T | None:
    """The first value other than None that ``probe()`` returns within ``timeout_s`` (looked
    at every ``interval_s``, and once more at the deadline); None when there was none."""
    deadline = time.monotonic() + timeout_s
    while (value := probe()) is None:
        if time.monotonic() >= deadline:
            return probe()
        await asyncio.sleep(interval_s)
    return value


async def reached(condition: Callable[[], object], timeout_s: float, interval_s: float) -> bool:
    """Whether ``condition()`` became truthy within ``timeout_s`` (looked at every
    ``interval_s``, and once more at the deadline)."""
    return (
        await first_value(lambda: True if condition() else None, timeout_s, interval_s) is not None
    )


async def wait_until(
    condition: Callable[[], object],
    timeout_s: float,
    interval_s: float = 0.01,
    *,
    what: str = "",
) -> None:
    """Return once ``condition()`` is truthy; fail the test if it is not within ``timeout_s``."""
    if not await reached(condition, timeout_s, interval_s):
        raise AssertionError(f"not reached in {timeout_s} s: {what or 'condition'}")

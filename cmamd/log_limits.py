"""Log volume bounded under attack: a repeated line is summarised, not repeated.

A server (or a proxy) sending garbage can make every frame cost a log line: 100 000 bad
frames, 100 000 lines, copies delayed by the logging, and journald's rate limit then
drops the daemon's real lines too. ``LimitedLog`` lets the first line of each kind per
interval through (with its details), counts the rest, and when the interval ends logs
one summary with the count: the same event, with a ``repeated`` field. Kinds are the
event text and level; fields do not split them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SUMMARY_INTERVAL_S = 10.0


@dataclass(slots=True)
class _Window:
    started: float
    suppressed: int = 0
    flush: asyncio.TimerHandle | None = field(default=None, repr=False)


class LimitedLog:
    """Wraps a structlog logger; ``warning``/``error``/``exception``/``info`` are limited."""

    def __init__(
        self,
        log: Any,
        interval_s: float = SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._interval_s = interval_s
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit("exception", event, fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log.debug(event, **fields)

    def suppressed(self, level: str, event: str) -> int:
        window = self._windows.get((level, event))
        return window.suppressed if window else 0

    def flush(self) -> None:
        """Log the summaries of every window now (at shutdown, in tests)."""
        for key in list(self._windows):
            self._summarise(key)

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        key = (level, event)
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window.started >= self._interval_s:
            self._summarise(key)
            window = None
        if window is None:
            self._windows[key] = _Window(now)
            getattr(self._log, level)(event, **fields)
            return
        window.suppressed += 1
        if window.flush is None:
            due_in = window.started + self._interval_s - now
            window.flush = _call_later(due_in, self._summarise, key)

    def _summarise(self, key: tuple[str, str]) -> None:
        window = self._windows.pop(key, None)
        if window is None:
            return
        if window.flush is not None:
            window.flush.cancel()
        if window.suppressed:
            level, event = key
            method = "error" if level == "exception" else level
            # The kind's own event, so that selecting a line by name finds its summary too.
            getattr(self._log, method)(
                event,
                repeated=window.suppressed,
                in_s=round(self._clock() - window.started, 3),
            )


def _call_later(
    delay: float, callback: Callable[[tuple[str, str]], None], key: tuple[str, str]
) -> asyncio.TimerHandle | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop: the summary comes with the next line or flush()
        return None
    return loop.call_later(max(delay, 0.0), callback, key)

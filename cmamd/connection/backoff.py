"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the reconnects of
many daemons hit by the same server restart instead of having them return in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """``next_delay()`` after each failure; the ceiling doubles per failure up to ``cap_s``.

    A session that stayed up for ``stable_after_s`` proves the endpoint healthy again, so
    ``session_ended`` resets the count and the next outage starts with short delays.
    """

    def __init__(
        self,
        base_s: float = 0.5,
        cap_s: float = 30.0,
        *,
        stable_after_s: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got base_s={base_s}, cap_s={cap_s}")
        if stable_after_s < 0:
            raise ValueError("stable_after_s must not be negative")
        self.base_s = base_s
        self.cap_s = cap_s
        self.stable_after_s = stable_after_s
        self._rand = rand
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last reset."""
        return self._failures

    def ceiling(self, failures: int) -> float:
        """Largest delay after ``failures`` earlier failures (the exponent stops growing at cap)."""
        ceiling = self.base_s
        for _ in range(failures):
            ceiling *= 2
            if ceiling >= self.cap_s:
                return self.cap_s
        return ceiling

    def next_delay(self) -> float:
        delay = self._rand() * self.ceiling(self._failures)
        self._failures += 1
        return delay

    def reset(self) -> None:
        self._failures = 0

    def session_ended(self, uptime_s: float) -> None:
        if uptime_s >= self.stable_after_s:
            self.reset()

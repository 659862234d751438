"""Clocks a test moves by hand."""

from __future__ import annotations

import time


class ShiftedClock:
    """The wall clock (seconds), moved on by ``offset``: expiry without waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

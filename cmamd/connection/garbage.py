"""A burst of undecodable frames means the link is broken, not that the frames are.

A real server never sends text frames or bytes that do not decode; a few may be a bug on
its side and are dropped (and logged, within limits), but a burst is a corrupted stream or
a hostile peer: the link is given up and a fresh one opened.
"""

from __future__ import annotations

from collections import deque

BURST_FRAMES = 20
BURST_WINDOW_S = 1.0


class GarbageMeter:
    def __init__(self, burst_frames: int = BURST_FRAMES, window_s: float = BURST_WINDOW_S) -> None:
        self._burst_frames = burst_frames
        self._window_s = window_s
        self._seen: deque[float] = deque()

    def bad_frame(self, now: float) -> bool:
        """Note one bad frame at ``now``; True when the link should be given up."""
        self._seen.append(now)
        while self._seen and self._seen[0] <= now - self._window_s:
            self._seen.popleft()
        return len(self._seen) >= self._burst_frames

"""The central replication queue: which (destination, master item) needs planning next.

Entries are coalesced: a master item that changes five times while its copy is being
sent is planned once more afterwards, from the latest state, never five times. That keeps
the queue bounded by the number of live items, and it is what guarantees that work on
one follower item is strictly sequential (a close never overtakes the open it closes):
an item is handed to one worker at a time and stays *busy* until that worker is done.
Risk-reducing work goes first, then the oldest; ties are broken round-robin across
followers so that a follower with many items does not starve the others.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

WorkKey = tuple[str, int, str]
"""(destination id, follower account id, master item key such as "p123")."""


@dataclass(slots=True)
class _Entry:
    first_seen: float  # monotonic time of the oldest change not yet planned
    urgent: bool
    order: int


@dataclass
class ReplicationQueue:
    maxsize: int = 100_000
    # A follower whose broker is slow (every order waits out its timeout) holds at most
    # this many workers, so the other followers keep being served.
    max_busy_per_follower: int = 4
    _pending: dict[WorkKey, _Entry] = field(default_factory=dict)
    _busy: set[WorkKey] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _last_followers: deque[int] = field(default_factory=lambda: deque(maxlen=64))

    def push(self, key: WorkKey, *, at: float, urgent: bool = False) -> None:
        """Mark ``key`` for planning; an existing entry keeps its age, may become urgent."""
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.maxsize:
                raise OverflowError(f"replication queue full ({self.maxsize} items)")
            self._pending[key] = _Entry(at, urgent, next(self._counter))
        else:
            entry.first_seen = min(entry.first_seen, at)
            entry.urgent = entry.urgent or urgent
        self._notify()

    async def take(self) -> tuple[WorkKey, float]:
        """Wait for the next key that is not busy; it is busy until ``done(key)``."""
        while True:
            key = self._pick()
            if key is not None:
                entry = self._pending.pop(key)
                self._busy.add(key)
                self._last_followers.append(key[1])
                return key, entry.first_seen
            self._changed.clear()
            await self._changed.wait()

    def done(self, key: WorkKey) -> None:
        self._busy.discard(key)
        self._notify()

    def discard_destination(self, destination: str) -> None:
        for key in [k for k in self._pending if k[0] == destination]:
            del self._pending[key]

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def in_progress(self) -> int:
        return len(self._busy)

    def idle(self) -> bool:
        return not self._pending and not self._busy

    async def wait_idle(self) -> None:
        while not self.idle():
            self._changed.clear()
            await self._changed.wait()

    async def wait_quiet(self, quiet_s: float, timeout_s: float) -> bool:
        """Wait until nothing was pending or in progress for ``quiet_s`` in a row.

        Unlike ``wait_idle`` this outlasts the gap between a follower's order and the
        event that wakes its item again; False when ``timeout_s`` ran out first.
        """
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if not self.idle():
                quiet_since = None
                continue
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return True
        return False

    def _pick(self) -> WorkKey | None:
        recent = {f: i for i, f in enumerate(self._last_followers)}
        busy_per_follower: dict[int, int] = {}
        for busy in self._busy:
            busy_per_follower[busy[1]] = busy_per_follower.get(busy[1], 0) + 1
        best: tuple[tuple[int, int, int], WorkKey] | None = None
        for key, entry in self._pending.items():
            if key in self._busy or busy_per_follower.get(key[1], 0) >= self.max_busy_per_follower:
                continue
            # urgent first; then followers served least recently; then oldest
            rank = (0 if entry.urgent else 1, recent.get(key[1], -1), entry.order)
            if best is None or rank < best[0]:
                best = (rank, key)
        return None if best is None else best[1]

    def _notify(self) -> None:
        self._changed.set()

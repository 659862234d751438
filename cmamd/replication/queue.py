"""The central replication queue: which (destination, master item) needs planning next.

Entries are coalesced: a master item that changes five times while its copy is being
sent is planned once more afterwards, from the latest state, never five times. That keeps
the queue bounded by the number of live items, and it is what guarantees that work on
one follower item is strictly sequential (a close never overtakes the open it closes):
an item is handed to one worker at a time and stays *busy* until that worker is done.
Risk-reducing work goes first (``push(urgent=True)``: a master position closed, an order
cancelled, a retry), then the oldest; followers are served round-robin so that a follower
with many items does not starve the others, and a slow follower holds at most
``max_busy_per_follower`` workers for ordinary work, twice that when the rest is urgent.

Every operation is O(1) amortised whatever the number of followers and items: each
follower has its own FIFO per class (urgent, normal), followers with work a worker may
take wait in a ready ring per class, and a push or done wakes one waiting worker, not all.
Stale FIFO slots (an entry promoted to urgent, discarded, or re-queued) are skipped when
reached.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

WorkKey = tuple[str, int, str]
"""(destination id, follower account id, master item key such as "p123")."""

_URGENT, _NORMAL = 0, 1


@dataclass(slots=True)
class _Entry:
    first_seen: float  # monotonic time of the oldest change not yet planned
    urgent: bool
    order: int


@dataclass(slots=True)
class _Follower:
    busy: int = 0
    # (key, order) in arrival order; a slot is live while the entry still has that order
    # and class (the entry may have been promoted, discarded, taken, or queued again)
    fifo: tuple[deque[tuple[WorkKey, int]], deque[tuple[WorkKey, int]]] = field(
        default_factory=lambda: (deque(), deque())
    )


@dataclass
class ReplicationQueue:
    maxsize: int = 100_000
    # A follower whose broker is slow (every order waits out its timeout) holds at most
    # this many workers, so the other followers keep being served.
    max_busy_per_follower: int = 4
    _pending: dict[WorkKey, _Entry] = field(default_factory=dict)
    _busy: set[WorkKey] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)  # for idle waiters
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _followers: dict[int, _Follower] = field(default_factory=dict)
    # followers that may have work a worker can take, per class, in round-robin order
    _ready: tuple[deque[int], deque[int]] = field(default_factory=lambda: (deque(), deque()))
    _in_ready: tuple[set[int], set[int]] = field(default_factory=lambda: (set(), set()))
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    def push(self, key: WorkKey, *, at: float, urgent: bool = False) -> None:
        """Mark ``key`` for planning; an existing entry keeps its age, may become urgent."""
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.maxsize:
                raise OverflowError(f"replication queue full ({self.maxsize} items)")
            entry = self._pending[key] = _Entry(at, urgent, next(self._counter))
        else:
            entry.first_seen = min(entry.first_seen, at)
            if entry.urgent or not urgent:
                return  # already queued in its class: nothing for a worker to see anew
            entry.urgent = True
        if key not in self._busy:  # a busy key is queued again when its worker is done
            self._enqueue(key, entry)

    async def take(self) -> tuple[WorkKey, float]:
        """Wait for the next key that is not busy; it is busy until ``done(key)``."""
        while True:
            key = self._pick()
            if key is not None:
                entry = self._pending.pop(key)
                self._busy.add(key)
                return key, entry.first_seen
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken just as it was cancelled: pass the wake on
                raise

    def done(self, key: WorkKey) -> None:
        if key not in self._busy:
            return
        self._busy.discard(key)
        follower = self._followers[key[1]]
        follower.busy -= 1
        entry = self._pending.get(key)
        if entry is not None:  # it changed while busy: its turn now
            self._enqueue(key, entry)
        else:
            self._mark_ready(key[1], follower)
            if not follower.busy and not follower.fifo[0] and not follower.fifo[1]:
                del self._followers[key[1]]
        if self.idle():
            self._changed.set()

    def discard_destination(self, destination: str) -> None:
        for key in [k for k in self._pending if k[0] == destination]:
            del self._pending[key]  # its FIFO slots go stale
        if self.idle():
            self._changed.set()

    def is_pending(self, key: WorkKey) -> bool:
        """Whether ``key`` is queued (again, if it is busy: it is taken once it is done)."""
        return key in self._pending

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

    # internals ---------------------------------------------------------------------------
    def _enqueue(self, key: WorkKey, entry: _Entry) -> None:
        follower = self._followers.get(key[1])
        if follower is None:
            follower = self._followers[key[1]] = _Follower()
        follower.fifo[_URGENT if entry.urgent else _NORMAL].append((key, entry.order))
        self._mark_ready(key[1], follower)

    def _cap(self, cls: int) -> int:
        # Risk-reducing work may hold as many workers again: a follower whose opens all wait
        # for the send budget must still get its closes (a flatten, a master close) to the
        # throttle, where they go ahead of those opens.
        return self.max_busy_per_follower * (2 if cls == _URGENT else 1)

    def _mark_ready(self, follower_id: int, follower: _Follower) -> None:
        woke = False
        for cls in (_URGENT, _NORMAL):
            if not follower.fifo[cls] or follower.busy >= self._cap(cls):
                continue
            if follower_id not in self._in_ready[cls]:
                self._in_ready[cls].add(follower_id)
                self._ready[cls].append(follower_id)
            woke = True
        if woke:
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _pick(self) -> WorkKey | None:
        for cls in (_URGENT, _NORMAL):
            ring, members = self._ready[cls], self._in_ready[cls]
            while ring:
                follower_id = ring.popleft()
                follower = self._followers.get(follower_id)
                if follower is None or follower.busy >= self._cap(cls):
                    members.discard(follower_id)  # done() puts it back when below its cap
                    continue
                key = self._live_head(follower.fifo[cls], cls)
                if key is None:
                    members.discard(follower_id)
                    continue
                follower.busy += 1
                if follower.fifo[cls] and follower.busy < self._cap(cls):
                    ring.append(follower_id)  # round-robin: to the back of the ring
                else:
                    members.discard(follower_id)
                return key
        return None

    def _live_head(self, fifo: deque[tuple[WorkKey, int]], cls: int) -> WorkKey | None:
        """Pop the first live slot of ``fifo``; None when only stale ones were left."""
        while fifo:
            key, order = fifo.popleft()
            entry = self._pending.get(key)
            if (
                entry is not None
                and entry.order == order
                and (_URGENT if entry.urgent else _NORMAL) == cls
                and key not in self._busy
            ):
                return key
        return None

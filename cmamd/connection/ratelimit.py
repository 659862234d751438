"""Per-connection request budget: never more than ``max_rps`` requests in any rolling second.

The Open API allows 50 requests per second per connection (docs/protocol.md §8) and answers
excess with ``REQUEST_FREQUENCY_EXCEEDED``. Requests over budget wait here instead of
failing, released in priority order (lower value first, FIFO within a priority) so that
closing a position never queues behind a burst of new orders or P&L refreshes.

The budget is a sliding log of the moments frames were *written*, not granted: a burst of
grants leaves the socket one frame after another, and counting grant times would let the
server see the tail of one burst and the head of the next closer together than the log
says. A granted slot counts as "in the window" until its ``Slot`` is used or released.
Hence the guarantee, exact on the client's clock: no span of ``window_s + margin_s``
seconds holds more than ``max_rps`` written frames.

How big the margin must be: the server counts frames when it receives them. Frames on one
TCP connection arrive in the order they were written, each ``d`` seconds after its write;
two frames written ``g`` apart arrive ``g + d2 - d1`` apart. So the server can see frames
closer together than we wrote them only by how much more the earlier one was delayed than
the later one (delay variation, not delay: a far server with a steady path needs nothing).
On a healthy path that variation is a few milliseconds (queueing in routers, the server's
own reading); ``DEFAULT_MARGIN_S`` covers it several times over and costs 2 % of the budget
(the former 0.1 s cost 9 %). What no margin short of a retransmission timeout (>= 0.2 s)
covers is a lost packet that releases everything behind it at once; the server then refuses
the excess with ``retryAfter``, which is safe (a refused request was not executed and is
sent again) but slow. So a refusal also widens this connection's margin (``widen_margin``:
doubled, up to ``MAX_MARGIN_S``) for the rest of its life, and an operator whose path is
known to be jittery sets ``api.rate_margin_s``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

OPEN_API_MAX_RPS = 50
"""Spotware's documented ceiling per connection for non-historical requests."""

DEFAULT_MARGIN_S = 0.02
"""Safety margin added to the server's 1 s window (see the module docstring)."""
MAX_MARGIN_S = 0.5
"""The widest margin a refusal widens to, and the widest ``api.rate_margin_s`` accepted."""
_MIN_WIDENED_MARGIN_S = 0.05

_EPSILON_S = 1e-9
"""Float slack so a grant sleeping exactly until a slot frees is not refused by rounding."""


class Priority(IntEnum):
    """Who goes first when the budget is short (lower value first)."""

    SESSION = 0  # application/account auth, token refresh: nothing works without them
    REDUCE = 1  # close position, cancel order, SL/TP amend: risk-reducing trades
    QUERY = 2  # reconcile, trader, symbols: needed to decide
    INCREASE = 3  # new orders: risk-increasing
    BACKGROUND = 4  # P&L refresh, spot subscriptions


class Clock(Protocol):
    """Time source and sleeper; tests substitute a fake so nothing really waits."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Slot:
    """Permission to write one frame: call ``used()`` once it is written, else ``release()``."""

    def __init__(self, throttle: RequestThrottle) -> None:
        self._throttle: RequestThrottle | None = throttle

    def used(self) -> None:
        """The frame was written (or may have been): it counts from now on."""
        if self._throttle is not None:
            self._throttle._settle(written=True)
            self._throttle = None

    def release(self) -> None:
        """Give the slot back unused (no-op after ``used()``)."""
        if self._throttle is not None:
            self._throttle._settle(written=False)
            self._throttle = None


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    future: asyncio.Future[Slot] = field(compare=False)


class RequestThrottle:
    """Grants send slots; ``slot = await acquire(priority)`` returns when a frame may go."""

    def __init__(
        self,
        max_rps: int = OPEN_API_MAX_RPS,
        *,
        window_s: float = 1.0,
        margin_s: float = DEFAULT_MARGIN_S,
        clock: Clock | None = None,
    ) -> None:
        if max_rps > OPEN_API_MAX_RPS:
            raise ValueError(
                f"max_rps={max_rps}: the Open API caps requests at {OPEN_API_MAX_RPS} "
                "per second per connection"
            )
        if max_rps < 1:
            raise ValueError(f"max_rps={max_rps}: must be at least 1")
        if window_s <= 0 or not 0 <= margin_s <= MAX_MARGIN_S:
            raise ValueError(f"window_s must be positive and margin_s within 0..{MAX_MARGIN_S} s")
        self.max_rps = max_rps
        self.window_s = window_s
        self.margin_s = margin_s
        self.span_s = window_s + margin_s
        self._clock: Clock = clock or SystemClock()
        self._written: deque[float] = deque()
        self._outstanding = 0  # granted slots neither used nor released yet
        self._settled = asyncio.Event()
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._paused_until = -math.inf
        self._widened_at = -math.inf
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed: BaseException | None = None
        self.waits = 0
        """How many acquisitions had to queue (budget spent, paused, or others ahead)."""

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def paused_until(self) -> float:
        return self._paused_until

    async def acquire(self, priority: int = Priority.QUERY) -> Slot:
        """Wait for a slot in priority order; the caller must use or release it."""
        if self._closed is not None:
            raise self._closed
        if not self._waiters and self._delay(self._clock.monotonic()) == 0:
            return self._grant()
        waiter = _Waiter(priority, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, waiter)
        self.waits += 1
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="throttle-dispatch")
        try:
            return await waiter.future  # cancelling the caller cancels it: the dispatcher skips it
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().release()  # granted just as the caller gave up
            raise

    def record_unthrottled(self) -> None:
        """Count a frame just written regardless of budget (heartbeats)."""
        self._written.append(self._clock.monotonic())

    def pause_until(self, monotonic_t: float) -> None:
        """Grant nothing before ``monotonic_t`` (the server's ``retryAfter``)."""
        self._paused_until = max(self._paused_until, monotonic_t)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock.monotonic() + seconds)

    def widen_margin(self) -> float:
        """The server refused a request for its rate: its window saw frames closer together
        than we wrote them, by more than the margin. Double the margin (at least
        ``_MIN_WIDENED_MARGIN_S``, at most ``MAX_MARGIN_S``) and return it.

        Refusals within one span of the last widening are answers to frames written under
        the old margin, one event: they do not widen it again."""
        now = self._clock.monotonic()
        if now < self._widened_at + self.span_s:
            return self.margin_s
        self._widened_at = now
        widened = max(self.margin_s * 2, _MIN_WIDENED_MARGIN_S)
        self.margin_s = min(MAX_MARGIN_S, max(self.margin_s, widened))
        self.span_s = self.window_s + self.margin_s
        return self.margin_s

    def close(self, error: BaseException) -> None:
        """Fail every waiter and later acquisition with ``error``."""
        self._closed = error
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            self._dispatcher = None
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._waiters.clear()

    def _grant(self) -> Slot:
        self._outstanding += 1
        return Slot(self)

    def _settle(self, *, written: bool) -> None:
        self._outstanding -= 1
        if written:
            self._written.append(self._clock.monotonic())
        self._settled.set()

    def _delay(self, now: float) -> float | None:
        """Seconds until a slot is free (0: now; None: once an outstanding slot settles)."""
        horizon = now - self.span_s + _EPSILON_S
        while self._written and self._written[0] <= horizon:
            self._written.popleft()
        waits = [0.0, self._paused_until - now]
        # Outstanding slots may be written any moment: they count as inside the window.
        excess = len(self._written) + self._outstanding - self.max_rps
        if excess >= 0:
            if excess >= len(self._written):
                return None  # nothing can age out: the outstanding slots fill the budget
            # The oldest frames must age out until one more fits.
            waits.append(self._written[excess] + self.span_s - now)
        return max(waits)

    async def _dispatch(self) -> None:
        while True:
            while self._waiters and self._waiters[0].future.done():
                heapq.heappop(self._waiters)
            if not self._waiters:
                return
            delay = self._delay(self._clock.monotonic())
            if delay is None:
                self._settled.clear()
                await self._settled.wait()
            elif delay > 0:
                # A new, more urgent waiter does not change when the next slot frees; it
                # only changes who gets it, which is decided after the sleep.
                await self._clock.sleep(delay)
            else:
                waiter = heapq.heappop(self._waiters)
                waiter.future.set_result(self._grant())

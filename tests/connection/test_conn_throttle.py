"""RequestThrottle on a virtual clock: budget, priority order, pauses, slots."""

from __future__ import annotations

import asyncio
import random

import pytest

from cmamd.connection.ratelimit import (
    DEFAULT_MARGIN_S,
    MAX_MARGIN_S,
    Priority,
    RequestThrottle,
)

from .conn_fakes import VirtualClock


def max_in_any_window(times: list[float], window_s: float) -> int:
    """Most frames inside any half-open window [t, t + window_s)."""
    times = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def send(throttle: RequestThrottle, priority: Priority = Priority.QUERY) -> None:
    """Acquire a slot and write the frame at once."""
    slot = await throttle.acquire(priority)
    slot.used()


async def test_more_than_fifty_per_second_is_refused() -> None:
    with pytest.raises(ValueError, match="caps requests at 50"):
        RequestThrottle(51)
    with pytest.raises(ValueError):
        RequestThrottle(0)
    assert RequestThrottle(50).max_rps == 50


async def test_budget_is_spent_without_waiting(virtual_clock: VirtualClock) -> None:
    throttle = RequestThrottle(5, clock=virtual_clock)
    start = virtual_clock.now
    for _ in range(5):
        await send(throttle)
    assert virtual_clock.now == start
    assert throttle.waits == 0
    await send(throttle)  # the sixth waits for the first to leave the window
    assert virtual_clock.now == pytest.approx(start + throttle.span_s)
    assert throttle.waits == 1


async def test_thousands_of_frames_never_exceed_max_rps_in_a_window(
    virtual_clock: VirtualClock,
) -> None:
    throttle = RequestThrottle(50, clock=virtual_clock)
    rng = random.Random(7)
    written: list[float] = []

    async def caller(arrive_after: float, priority: Priority, write_delay: float) -> None:
        await virtual_clock.sleep(arrive_after)
        slot = await throttle.acquire(priority)
        await virtual_clock.sleep(write_delay)  # queued behind other writes for a while
        written.append(virtual_clock.monotonic())
        slot.used()

    # Bursts and trickles over ~60 virtual seconds, every priority mixed in, and grants
    # that take up to 0.3 s to reach the socket.
    arrivals = [rng.choice([0.0, rng.uniform(0, 60)]) for _ in range(3000)]
    await asyncio.gather(
        *(caller(t, rng.choice(list(Priority)), rng.uniform(0, 0.3)) for t in arrivals)
    )

    assert len(written) == 3000
    assert max_in_any_window(written, 1.0) <= 50
    assert max_in_any_window(written, throttle.span_s - 1e-6) <= 50
    # Not starved either: a saturated budget hands out about max_rps per span.
    assert max(written) - min(written) <= 3000 / 50 * (throttle.span_s + 0.3) + 1


async def test_a_granted_slot_holds_its_place_until_used_or_released(
    virtual_clock: VirtualClock,
) -> None:
    throttle = RequestThrottle(2, clock=virtual_clock)
    first = await throttle.acquire()
    second = await throttle.acquire()
    third = asyncio.create_task(throttle.acquire())
    await virtual_clock.sleep(5.0)
    assert not third.done()  # both slots may still be written at any moment
    first.used()  # written now: it counts from now, not from its grant
    second.release()  # never written: its place is free again
    await asyncio.sleep(0)
    (await third).used()
    assert virtual_clock.now == pytest.approx(1005.0)
    fourth = await throttle.acquire()  # two frames in the window: wait for the oldest
    assert virtual_clock.now == pytest.approx(1005.0 + throttle.span_s)
    fourth.release()
    first.release()  # no-op once used
    assert throttle.outstanding == 0


async def test_waiters_are_released_by_priority_then_arrival(virtual_clock: VirtualClock) -> None:
    throttle = RequestThrottle(1, clock=virtual_clock)
    await send(throttle)  # budget spent: everyone below has to queue
    order: list[str] = []

    async def caller(label: str, priority: Priority) -> None:
        await send(throttle, priority)
        order.append(label)

    callers = [
        ("pnl", Priority.BACKGROUND),
        ("open-1", Priority.INCREASE),
        ("close-1", Priority.REDUCE),
        ("open-2", Priority.INCREASE),
        ("auth", Priority.SESSION),
        ("close-2", Priority.REDUCE),
        ("reconcile", Priority.QUERY),
    ]
    tasks = []
    for label, priority in callers:
        tasks.append(asyncio.create_task(caller(label, priority)))
        await asyncio.sleep(0)  # arrive in list order
    await asyncio.gather(*tasks)
    assert order == ["auth", "close-1", "close-2", "reconcile", "open-1", "open-2", "pnl"]


async def test_a_later_urgent_request_overtakes_queued_ones(virtual_clock: VirtualClock) -> None:
    throttle = RequestThrottle(2, clock=virtual_clock)
    order: list[str] = []

    async def caller(label: str, priority: Priority, arrive_after: float = 0.0) -> None:
        await virtual_clock.sleep(arrive_after)
        await send(throttle, priority)
        order.append(label)

    await asyncio.gather(
        *(caller(f"open-{i}", Priority.INCREASE) for i in range(6)),
        caller("close", Priority.REDUCE, arrive_after=0.5),
    )
    assert order.index("close") == 2  # right after the two that went immediately


async def test_pause_until_holds_every_priority(virtual_clock: VirtualClock) -> None:
    throttle = RequestThrottle(50, clock=virtual_clock)
    resume_at = virtual_clock.now + 3.0
    throttle.pause_until(resume_at)
    throttle.pause_until(resume_at - 2.0)  # an earlier deadline does not shorten the pause
    await send(throttle, Priority.SESSION)
    assert virtual_clock.now >= resume_at
    await send(throttle)  # budget left, pause over: immediate
    assert virtual_clock.now == pytest.approx(resume_at)


async def test_a_cancelled_waiter_does_not_block_the_queue(virtual_clock: VirtualClock) -> None:
    throttle = RequestThrottle(1, clock=virtual_clock)
    await send(throttle)
    doomed = asyncio.create_task(throttle.acquire(Priority.SESSION))
    await asyncio.sleep(0)
    survivor = asyncio.create_task(send(throttle, Priority.BACKGROUND))
    await asyncio.sleep(0)
    doomed.cancel()
    await survivor
    assert throttle.queued == 0 and throttle.outstanding == 0
    assert virtual_clock.now == pytest.approx(1000.0 + throttle.span_s)


async def test_a_slot_granted_to_a_caller_cancelled_meanwhile_is_returned(
    virtual_clock: VirtualClock,
) -> None:
    throttle = RequestThrottle(1, clock=virtual_clock)
    first = await throttle.acquire()
    late = asyncio.create_task(throttle.acquire())
    await asyncio.sleep(0)
    first.release()  # the dispatcher grants ``late``'s future...
    await asyncio.sleep(0)
    late.cancel()  # ...but its caller is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await late
    assert throttle.outstanding == 0
    await send(throttle)  # the budget is intact
    assert virtual_clock.now == 1000.0


async def test_unthrottled_frames_count_against_the_budget(virtual_clock: VirtualClock) -> None:
    throttle = RequestThrottle(2, clock=virtual_clock)
    throttle.record_unthrottled()
    throttle.record_unthrottled()
    throttle.record_unthrottled()  # never refused, even over budget
    start = virtual_clock.now
    await send(throttle)
    # Three frames in the window: the oldest two must age out before one more fits.
    assert virtual_clock.now == pytest.approx(start + throttle.span_s)


async def test_close_fails_waiters_and_later_acquisitions(virtual_clock: VirtualClock) -> None:
    throttle = RequestThrottle(1, clock=virtual_clock)
    await send(throttle)
    waiting = asyncio.create_task(throttle.acquire())
    await asyncio.sleep(0)
    throttle.close(RuntimeError("gone"))
    with pytest.raises(RuntimeError, match="gone"):
        await waiting
    with pytest.raises(RuntimeError, match="gone"):
        await throttle.acquire()


async def test_the_margin_is_what_the_path_needs_and_a_refusal_widens_it(
    virtual_clock: VirtualClock,
) -> None:
    throttle = RequestThrottle(1, clock=virtual_clock)
    assert throttle.span_s == pytest.approx(1.0 + DEFAULT_MARGIN_S)
    assert DEFAULT_MARGIN_S <= 0.025  # a 0.1 s margin spent 9 % of the budget
    first = throttle.widen_margin()
    assert first > DEFAULT_MARGIN_S
    # more refusals of the same burst (within a span): one event, widened once
    assert throttle.widen_margin() == first
    widened = [first]
    for _ in range(6):
        await virtual_clock.sleep(throttle.span_s)
        widened.append(throttle.widen_margin())
    assert widened == sorted(widened) and widened[1] == 2 * first
    assert widened[-1] == MAX_MARGIN_S  # doubling stops at the cap
    start = virtual_clock.now
    await send(throttle)
    await send(throttle)  # waits the widened span
    assert virtual_clock.now == pytest.approx(start + 1.0 + MAX_MARGIN_S)
    with pytest.raises(ValueError, match="margin_s"):
        RequestThrottle(50, margin_s=MAX_MARGIN_S + 0.01)

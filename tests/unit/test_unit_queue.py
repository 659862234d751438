"""ReplicationQueue: coalescing, busy keys, priority, fairness, bounds, idleness."""

from __future__ import annotations

import asyncio

import pytest

from cmamd.replication.queue import ReplicationQueue


async def take_now(queue: ReplicationQueue) -> tuple[tuple[str, int, str], float]:
    """take(), which must not block: something is ready."""
    return await asyncio.wait_for(queue.take(), 1)


async def nothing_ready(queue: ReplicationQueue) -> bool:
    """True when take() blocks (no key can be handed out now)."""
    task = asyncio.ensure_future(queue.take())
    for _ in range(5):
        await asyncio.sleep(0)
    if task.done():
        return False
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return True


async def test_a_key_pushed_five_times_is_taken_once_with_its_oldest_time() -> None:
    queue = ReplicationQueue()
    key = ("d", 1, "p1")
    for at in (5.0, 3.0, 7.0, 4.0, 9.0):
        queue.push(key, at=at)
    assert queue.depth == 1
    taken, first_seen = await take_now(queue)
    assert (taken, first_seen) == (key, 3.0)
    assert queue.depth == 0
    queue.done(key)
    assert await nothing_ready(queue)
    assert queue.idle()


async def test_a_busy_key_is_held_back_until_done_then_its_new_push_is_taken() -> None:
    queue = ReplicationQueue()
    key = ("d", 1, "p1")
    queue.push(key, at=1.0)
    await take_now(queue)
    assert queue.in_progress == 1 and not queue.is_pending(key)
    queue.push(key, at=2.0)  # the item changed while its copy was being sent
    assert queue.is_pending(key)  # the executor leaves the re-plan to the queue
    queue.push(key, at=3.0)
    assert queue.depth == 1
    assert await nothing_ready(queue), "a busy key must not go to a second worker"

    waiter = asyncio.ensure_future(queue.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.done(key)  # wakes the waiter
    taken, first_seen = await asyncio.wait_for(waiter, 1)
    assert (taken, first_seen) == (key, 2.0)
    queue.done(key)
    assert queue.idle()


async def test_other_keys_are_served_while_one_is_busy() -> None:
    queue = ReplicationQueue()
    queue.push(("d", 1, "p1"), at=1.0)
    (busy, _) = await take_now(queue)
    queue.push(busy, at=2.0)
    queue.push(("d", 1, "p2"), at=3.0)
    taken, _ = await take_now(queue)
    assert taken == ("d", 1, "p2")


async def test_urgent_first_then_oldest() -> None:
    queue = ReplicationQueue()
    queue.push(("d", 1, "p1"), at=1.0)
    queue.push(("d", 1, "p2"), at=2.0)
    queue.push(("d", 1, "p3"), at=3.0, urgent=True)
    order = []
    for _ in range(3):
        key, _ = await take_now(queue)
        order.append(key[2])
    assert order == ["p3", "p1", "p2"]


async def test_a_later_urgent_push_promotes_an_existing_entry() -> None:
    queue = ReplicationQueue()
    queue.push(("d", 1, "p1"), at=1.0)
    queue.push(("d", 1, "p2"), at=2.0)
    queue.push(("d", 1, "p2"), at=5.0, urgent=True)
    key, first_seen = await take_now(queue)
    assert (key, first_seen) == (("d", 1, "p2"), 2.0)


async def test_round_robin_across_followers() -> None:
    queue = ReplicationQueue()
    # follower 1 has many items queued first; follower 2 and 3 one each, later
    for i in range(4):
        queue.push(("d1", 1, f"p{i}"), at=float(i))
    queue.push(("d2", 2, "p10"), at=10.0)
    queue.push(("d3", 3, "p20"), at=11.0)
    followers = []
    for _ in range(6):
        key, _ = await take_now(queue)
        followers.append(key[1])
        queue.done(key)
    # every follower is served before follower 1 gets its second item
    assert followers[:3] == [1, 2, 3]
    assert followers[3:] == [1, 1, 1]


async def test_discard_destination_drops_only_its_pending_entries() -> None:
    queue = ReplicationQueue()
    queue.push(("gone", 1, "p1"), at=1.0)
    queue.push(("gone", 1, "p2"), at=2.0)
    queue.push(("kept", 2, "p1"), at=3.0)
    queue.discard_destination("gone")
    assert queue.depth == 1
    key, _ = await take_now(queue)
    assert key == ("kept", 2, "p1")
    queue.done(key)
    assert queue.idle()


async def test_overflow_raises_but_a_known_key_still_coalesces() -> None:
    queue = ReplicationQueue(maxsize=2)
    queue.push(("d", 1, "p1"), at=1.0)
    queue.push(("d", 1, "p2"), at=2.0)
    with pytest.raises(OverflowError, match="full"):
        queue.push(("d", 1, "p3"), at=3.0)
    queue.push(("d", 1, "p1"), at=0.5)  # already queued: no new entry needed
    assert queue.depth == 2
    key, first_seen = await take_now(queue)
    assert (key, first_seen) == (("d", 1, "p1"), 0.5)
    queue.push(("d", 1, "p3"), at=3.0)  # room again
    assert queue.depth == 2


async def test_wait_idle_returns_only_once_nothing_is_pending_or_busy() -> None:
    queue = ReplicationQueue()
    await asyncio.wait_for(queue.wait_idle(), 1)  # idle from the start

    queue.push(("d", 1, "p1"), at=1.0)
    idle = asyncio.ensure_future(queue.wait_idle())
    await asyncio.sleep(0)
    key, _ = await take_now(queue)
    await asyncio.sleep(0)
    assert not idle.done(), "taken but still busy"
    queue.done(key)
    await asyncio.wait_for(idle, 1)
    assert queue.idle() and queue.depth == 0 and queue.in_progress == 0


async def test_take_waits_for_a_push() -> None:
    queue = ReplicationQueue()
    waiter = asyncio.ensure_future(queue.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.push(("d", 1, "p1"), at=4.0)
    assert await asyncio.wait_for(waiter, 1) == (("d", 1, "p1"), 4.0)


async def test_a_slow_follower_holds_at_most_its_share_of_workers() -> None:
    queue = ReplicationQueue(max_busy_per_follower=2)
    for n in range(5):
        queue.push(("d", 1, f"p{n}"), at=float(n))
    queue.push(("d", 2, "p9"), at=10.0)
    taken = [(await queue.take())[0] for _ in range(3)]
    # two keys of follower 1 at most, then follower 2 is served though its key is newest
    assert sorted(k[1] for k in taken) == [1, 1, 2]
    waiting = asyncio.ensure_future(queue.take())
    await asyncio.sleep(0)
    assert not waiting.done(), "follower 1 is at its limit"
    queue.done(taken[0] if taken[0][1] == 1 else taken[1])
    key, _ = await asyncio.wait_for(waiting, 1)
    assert key[1] == 1


async def test_wait_quiet_needs_an_unbroken_idle_stretch() -> None:
    queue = ReplicationQueue()
    queue.push(("d", 1, "p1"), at=0.0)
    assert await queue.wait_quiet(0.05, timeout_s=0.2) is False  # pending all along
    key, _ = await queue.take()
    queue.done(key)
    assert await queue.wait_quiet(0.05, timeout_s=1.0) is True


async def test_a_push_wakes_one_waiting_worker_not_all() -> None:
    queue = ReplicationQueue()
    workers = [asyncio.ensure_future(queue.take()) for _ in range(8)]
    await asyncio.sleep(0)
    queue.push(("d", 1, "p1"), at=1.0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert sum(w.done() for w in workers) == 1
    assert len(queue._waiters) == 7, "the others were never woken"
    queue.push(("d", 2, "p1"), at=2.0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert sum(w.done() for w in workers) == 2
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


async def test_a_wake_that_meets_a_cancelled_worker_goes_to_the_next() -> None:
    queue = ReplicationQueue()
    first = asyncio.ensure_future(queue.take())
    second = asyncio.ensure_future(queue.take())
    await asyncio.sleep(0)
    queue.push(("d", 1, "p1"), at=1.0)  # wakes ``first``...
    first.cancel()  # ...which is cancelled before it runs
    key, _ = await asyncio.wait_for(second, 1)
    assert key == ("d", 1, "p1")
    await asyncio.gather(first, return_exceptions=True)


async def test_an_urgent_push_of_a_busy_key_goes_first_once_it_is_done() -> None:
    queue = ReplicationQueue()
    queue.push(("d", 1, "p1"), at=1.0)
    busy, _ = await take_now(queue)
    queue.push(("d", 2, "p2"), at=2.0)
    queue.push(("d", 3, "p3"), at=3.0)
    queue.push(busy, at=4.0, urgent=True)  # the master closed it while its open was sent
    queue.done(busy)
    key, _ = await take_now(queue)
    assert key == busy


async def test_many_followers_are_served_in_round_robin_with_urgent_work_first() -> None:
    queue = ReplicationQueue()
    for follower in range(1, 201):
        for item in range(3):
            queue.push(("d", follower, f"p{item}"), at=float(item))
    queue.push(("d", 150, "p9"), at=9.0, urgent=True)
    first, _ = await take_now(queue)
    assert first == ("d", 150, "p9")
    seen = []
    for _ in range(200):
        key, _ = await take_now(queue)
        seen.append(key[1])
    assert sorted(seen) == list(range(1, 201)), "each follower once before any twice"


async def test_urgent_work_of_a_follower_at_its_cap_still_gets_a_worker() -> None:
    # four opens of one follower wait for the send budget; its closes must still reach the
    # throttle, where they go ahead of those opens (ctl flatten, a master close)
    queue = ReplicationQueue(max_busy_per_follower=4)
    for n in range(6):
        queue.push(("d", 1, f"p{n}"), at=float(n))
    opens = [(await take_now(queue))[0] for _ in range(4)]
    assert await nothing_ready(queue), "ordinary work stops at the cap"
    for n in range(10, 16):
        queue.push(("d", 1, f"p{n}"), at=float(n), urgent=True)
    closes = [(await take_now(queue))[0] for _ in range(4)]
    assert [k[2] for k in closes] == ["p10", "p11", "p12", "p13"]
    assert await nothing_ready(queue), "urgent work too has a cap: twice the ordinary one"
    queue.done(opens[0])
    key, _ = await take_now(queue)
    assert key[2] == "p14", "urgent first"

"""Keys planned again later: a refused risk-reducing order after a growing pause, and an
order that never left the process once the follower's link is up again."""

from __future__ import annotations

import asyncio
import time

from cmamd.accounts.session import AccountSession
from cmamd.logs import get_logger
from cmamd.replication.outcomes import next_retry_delay
from cmamd.replication.queue import ReplicationQueue, WorkKey
from cmamd.replication.routes import CopyRoute
from cmamd.replication.tuning import ReplicationTuning

log = get_logger("cmamd.replication")


class FollowUps:
    def __init__(self, queue: ReplicationQueue, tuning: ReplicationTuning) -> None:
        self._queue = queue
        self._tuning = tuning
        self._retry_delays: dict[WorkKey, float] = {}
        self._replans: set[asyncio.Task[None]] = set()  # keys waiting for a link to send on
        self._timers: set[asyncio.TimerHandle] = set()

    def succeeded(self, work: WorkKey) -> None:
        self._retry_delays.pop(work, None)

    def retry_later(self, route: CopyRoute, key: str, code: str) -> None:
        """Plan ``key`` again after a growing pause (outcomes.next_retry_delay), indefinitely."""
        work = route.work(key)
        delay = next_retry_delay(self._retry_delays.get(work), self._tuning)
        self._retry_delays[work] = delay
        log.warning(
            "risk-reducing order refused",
            next="retrying later",
            code=code,
            in_s=delay,
            rule=route.target.rule,
            follower=route.follower,
            master_item=key,
        )

        def push() -> None:
            self._timers.discard(timer)
            self._queue.push(work, at=time.monotonic(), urgent=True)

        timer = asyncio.get_running_loop().call_later(delay, push)
        self._timers.add(timer)

    def replan_when_connected(self, work: WorkKey, follower: AccountSession) -> None:
        """Plan ``work`` again once the follower's link is up and the account ready."""

        async def replan() -> None:
            try:
                await follower.connection.wait_ready()
            except Exception as exc:  # closed for good (shutdown, account removed)
                log.warning(
                    "not planned again", reason="the link closed", error=str(exc), work=list(work)
                )
                return
            await follower.ready.wait()
            self._queue.push(work, at=time.monotonic())

        task = asyncio.create_task(replan())
        self._replans.add(task)
        task.add_done_callback(self._replans.discard)

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        tasks = list(self._replans)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""A graceful shutdown that always ends: each step bounded, what did not finish named.

systemd's TimeoutStopSec must never have to SIGKILL the daemon (a kill mid-write is what
the store's journal exists for, but a clean exit keeps sockets, logs and the store tidy).
So the daemon's teardown runs as named steps sharing one budget: a step that overruns it
is cancelled, logged by name, and the next step still runs. Every step gets at least
``min_step_s`` even once the budget is spent, so the later ones (closing sockets) are
still tried after one that hung; past the budget, a step costs at most twice that (its
run and its cancellation), so the whole shutdown ends within the budget plus
2 x ``min_step_s`` per step.

``run_to_exit`` is the process's side of the same promise: a task that ignores its
cancellation cannot keep the process from exiting (``asyncio.run`` would wait for it).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from cmamd.logs import get_logger

log = get_logger("cmamd.daemon")

CANCEL_GRACE_S = 1.0
"""How long a step (or a task at exit) is given to end once cancelled, within the budget."""


@dataclass(frozen=True, slots=True)
class ShutdownStep:
    name: str
    run: Callable[[], Awaitable[object]]


async def run_steps(
    steps: Sequence[ShutdownStep],
    budget_s: float,
    monotonic: Callable[[], float],
    *,
    min_step_s: float,
    cancel_grace_s: float = CANCEL_GRACE_S,
) -> list[str]:
    """Run ``steps`` in order within ``budget_s`` overall; returns the names of those
    that did not finish (overran or failed). A failing step never stops the next."""
    deadline = monotonic() + budget_s
    unfinished: list[str] = []
    for step in steps:
        timeout_s = max(deadline - monotonic(), min_step_s)
        task = asyncio.ensure_future(step.run())
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            task.cancel()
            # not awaited beyond the grace: a step that ignores cancellation is left behind
            grace_s = max(min(cancel_grace_s, deadline - monotonic()), min_step_s)
            ended, _ = await asyncio.wait({task}, timeout=grace_s)
            log.error(
                "shutdown step did not finish in time",
                step=step.name,
                timeout_s=round(timeout_s, 3),
                reason="cancelled" if ended else "ignored its cancellation; left behind",
            )
            unfinished.append(step.name)
        elif not task.cancelled() and task.exception() is not None:
            log.error("shutdown step failed", step=step.name, error=repr(task.exception()))
            unfinished.append(step.name)
    return unfinished


def run_to_exit(main: Coroutine[Any, Any, int], *, grace_s: float = CANCEL_GRACE_S) -> int:
    """``asyncio.run(main)``, except that tasks still running after ``main`` ended get
    ``grace_s`` to end once cancelled; should any refuse, the process exits without them
    (``os._exit`` with ``main``'s code, 1 if it raised) instead of hanging until systemd
    kills it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    code = 1
    try:
        code = loop.run_until_complete(main)
        return code
    finally:
        stuck = _cancel_leftovers(loop, grace_s)
        if stuck:
            log.error("tasks still running at exit", tasks=stuck, next="exiting without them")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, grace_s: float) -> list[str]:
    """Cancel the loop's remaining tasks; the names of those still running after
    ``grace_s``."""
    left = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait(left, timeout=grace_s))
    return sorted(task.get_name() for task in left if not task.done())

"""The replicator's workers leave the loop to others between items."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cmamd.replication.executor import Replicator
from cmamd.replication.tuning import ReplicationTuning
from cmamd.state.store import StateStore


async def test_a_worker_yields_between_items_so_events_are_read_meanwhile(
    tmp_path: Path,
) -> None:
    """Items with nothing to send never suspend: a worker must still let the event reader
    run between them, or 1 000 no-op plans keep a master's fill unread for 50 ms."""
    with StateStore.open(tmp_path / "state") as store:
        replicator = Replicator(store, {}, tuning=ReplicationTuning(workers=1))
        for n in range(100):  # for a route that is gone: planned as nothing at all
            replicator.queue.push(("gone", 7, f"p{n + 1}"), at=0.0)
        replicator.start()
        seen: list[int] = []
        asyncio.get_running_loop().call_soon(lambda: seen.append(replicator.queue.depth))
        try:
            await asyncio.wait_for(replicator.queue.wait_idle(), 5)
        finally:
            await replicator.stop()
        assert seen and seen[0] >= 98, f"the worker ran {100 - seen[0]} items in one step"

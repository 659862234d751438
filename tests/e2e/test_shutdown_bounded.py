"""A shutdown step that hangs cannot hold the daemon: it is cut off, the later steps run,
the store is closed and the daemon exits 0 within its budget (systemd never SIGKILLs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from cmamd.daemon.timing import DaemonTiming
from cmamd.sim import SimServer
from cmamd.state.store import StateStore

from .kit import InProcessDaemon, write_yaml

RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]


async def test_a_hung_shutdown_step_is_cut_off_and_the_daemon_still_exits(
    sim: SimServer,
    make_config: Callable[..., Path],
    daemons: Callable[..., InProcessDaemon],
    tmp_path: Path,
) -> None:
    config = make_config(["master", "follower-hedged"], RULES)
    data = yaml.safe_load(config.read_text())
    data["shutdown_timeout_s"] = 0.5
    write_yaml(config, data)
    timing = DaemonTiming(teardown_s=0.5, shutdown_step_min_s=0.1)
    daemon = daemons(config, timing=timing)
    running = await daemon.start()
    connection = running.pool.connections[0]
    release = asyncio.Event()
    stop_all = running.accounts.stop_all

    async def hangs_through_cancellation() -> None:
        while not release.is_set():  # released at the end, or the test's loop could not close
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue
        await stop_all()

    running.accounts.stop_all = hangs_through_cancellation  # type: ignore[method-assign]
    stopping = time.monotonic()
    try:
        assert await daemon.stop() == 0
        elapsed = time.monotonic() - stopping
    finally:
        release.set()
    # the budget (shutdown_timeout_s + teardown_s), at most two floors per step past it, slack
    assert elapsed < 0.5 + 0.5 + 6 * 2 * 0.1 + 1.5, elapsed
    assert connection.state == "closed", "the step after the hung one closed the socket"
    StateStore.open(tmp_path / "state").close()  # the store was closed: its lock is free

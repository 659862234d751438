"""A FIFO where the config was, at SIGHUP: the reload is rejected at once, the event loop
never blocks waiting for a writer (issue 8.6)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from cmamd.daemon import reload_status

from .kit import eventually

RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]


async def test_sighup_with_a_fifo_as_config_rejects_without_blocking_the_loop(
    make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    config = make_config(["master", "follower-hedged"], RULES)
    daemon = daemons(config)
    running = await daemon.start()
    config.unlink()
    os.mkfifo(config)
    # Before the fix the reload's open() blocked the loop until a writer came: one comes
    # after 5 s, so that the old code fails this test instead of hanging it.
    unblock = threading.Timer(5.0, lambda: _write_to(config))
    unblock.daemon = True
    unblock.start()
    longest_stall = 0.0
    last = time.monotonic()

    async def watch_loop() -> None:
        nonlocal longest_stall, last
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            longest_stall = max(longest_stall, now - last)
            last = now

    watcher = asyncio.create_task(watch_loop())
    try:
        running._on_signal(signal.SIGHUP)
        state_dir = tmp_path / "state"

        def rejected() -> bool:
            status = reload_status.read(state_dir)
            return status is not None and not status.ok

        await eventually(rejected, 10, "reload rejected")
        status = reload_status.read(state_dir)
        assert status is not None and any("not a regular file" in p for p in status.problems)
        assert longest_stall < 1.0, f"the event loop stalled for {longest_stall:.1f} s"
    finally:
        watcher.cancel()
        unblock.cancel()


def _write_to(fifo: Path) -> None:
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # nobody reading: nothing to unblock
    os.write(fd, b"api: {}\n")
    os.close(fd)

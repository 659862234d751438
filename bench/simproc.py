"""``python -m bench.simproc --followers N --describe PATH [--frames OUT]``: the bench
world's simulator in a process of its own (so its memory and CPU are not the daemon's).

Writes the description (url, credentials, accounts) to PATH once listening; serves until
SIGTERM/SIGINT. With ``--frames``, every frame at the simulator's socket is timestamped
through its public frame hook and, at exit, the trading frames (orders in, execution
events out) are decoded and written to OUT as JSON (``bench.frames``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
from pathlib import Path

from bench import frames, world
from cmamd.logs import configure_logging
from cmamd.sim import SimServer


async def serve(
    followers: int, describe: Path, frames_out: Path | None = None, max_rps: int | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    overrides = {} if max_rps is None else {"max_rps": max_rps}
    sim = SimServer(world.sim_config(followers, **overrides))
    recorded: list[frames.Raw] = []
    if frames_out is not None:
        sim.add_frame_listener(lambda e: recorded.append((e.direction, e.conn_id, e.at, e.frame)))
    await sim.start()
    try:
        description = {**sim.describe(), "port": sim.port}
        temporary = describe.with_name(f".{describe.name}.tmp")
        temporary.write_text(json.dumps(description))
        os.replace(temporary, describe)
        parent = os.getppid()
        while not stop.is_set() and os.getppid() == parent:  # orphaned: the bench is gone
            # The simulator stands in for a server that counts frames as they arrive. A
            # full collection of this process's heap (the world, the recorded frames) took
            # 15-20 ms mid-burst: frames that arrived meanwhile were read, and stamped,
            # late, packing frames written a second apart into one window (a refusal no
            # server's intake would make). Frozen objects are not scanned again, so a
            # collection only walks what is younger than this loop's period.
            gc.freeze()
            await asyncio.sleep(0.5)
    finally:
        await sim.stop()
        if frames_out is not None:
            frames.write(frames_out, recorded)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc")
    parser.add_argument("--followers", type=int, required=True)
    parser.add_argument("--describe", type=Path, required=True)
    parser.add_argument("--frames", type=Path, default=None)
    parser.add_argument("--max-rps", type=int, default=None, help="the simulator's limit")
    args = parser.parse_args()
    configure_logging("warning", "json")
    asyncio.run(serve(args.followers, args.describe, args.frames, args.max_rps))


if __name__ == "__main__":
    main()

"""``python -m bench.profiled OUT ARGS...``: ``cmamd ARGS...`` under cProfile, timed in the
event loop thread's CPU time (wall time would charge a loopback ``send`` with the peer
process it wakes on a busy core; process time would charge the loop with the state
writer's work done meanwhile on the other core), the stats written to OUT when the daemon
exits. Used by ``CMAMD_BENCH_PROFILE``."""

from __future__ import annotations

import cProfile
import sys
import time

from cmamd.cli import main


def run(out: str, argv: list[str]) -> int:
    profiler = cProfile.Profile(time.thread_time)
    try:
        return int(profiler.runcall(main, argv))
    finally:
        profiler.dump_stats(out)


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1], sys.argv[2:]))

"""Scenario "startup": N accounts on C connections, from `cmamd run` to READY=1.

The simulator (its own process, recording the frames it receives) holds 1 master and
N - 1 followers of one broker; the daemon (its own process, production config, C demo
connections) copies the master to every follower. Reported: seconds to READY=1 (the
daemon sends it once every account is ready or failed), the requests it took, the bound
(requests / (C x max_rps): the budget spent without a pause), RSS after start, and its
idle CPU over ``idle_s`` with every account ready.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.latency import THROTTLE_SPAN_S
from bench.procs import SimProcess, cpu_seconds, daemon_for, rss_mib

MAX_RPS = 50


async def run_case(accounts: int, connections: int, idle_s: float) -> dict[str, Any]:
    followers = accounts - 1
    with tempfile.TemporaryDirectory(prefix="cmamd-bench-start-") as tmp_name:
        tmp = Path(tmp_name)
        frames_path = tmp / "frames.json"
        sim = await SimProcess.start(followers, tmp, frames=frames_path)
        try:
            daemon = daemon_for(sim, tmp, followers, connections)
            startup_s = await daemon.start(timeout=600)
            rss = rss_mib(daemon.pid)
            c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            await asyncio.sleep(idle_s)
            idle = (cpu_seconds(daemon.pid) - c0) / (time.monotonic() - t0)
            rss_idle = rss_mib(daemon.pid)
            status = daemon.last_status()
            await daemon.stop()
        finally:
            await sim.stop()
        counts = json.loads(frames_path.read_text())["requests_in"]
    requests = sum(counts.values())
    bound_s = requests / (connections * MAX_RPS)
    return {
        "accounts": accounts,
        "connections": connections,
        "startup_s": round(startup_s, 2),
        "requests": requests,
        "requests_per_account": round(requests / accounts, 2),
        "requests_by_type": counts,
        "bound_s": round(bound_s, 2),
        "vs_bound": round(startup_s / bound_s, 3) if bound_s else None,
        # the client throttle spends max_rps per 1 s + its margin
        "vs_client_span_bound": round(startup_s / (bound_s * THROTTLE_SPAN_S), 3)
        if bound_s
        else None,
        "rss_mib": rss,
        "rss_after_idle_mib": rss_idle,
        "idle_s": idle_s,
        "idle_cpu_pct": round(idle * 100, 3),
        "status": status,
    }


async def run(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [await run_case(**case) for case in cases]

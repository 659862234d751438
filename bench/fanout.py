"""Scenario "fanout": one master trade copied to N followers over C connections.

Simulator and daemon in processes of their own (``bench/procs.py``); times at the
simulator's socket. Each trade finds the daemon's request budget unspent: the first 50
copies per connection may go at once and then 50 per rolling second, so the exact bound for
the last copy is floor((n - 1) / 50) s after the master's fill, n being the most follower
orders one connection carries. First copy: the master's fill written to the daemon ->
the first follower order received; last copy: -> the last one.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import world
from bench.latency import THROTTLE_SPAN_S
from bench.procs import SimProcess, daemon_for
from cmamd.accounts.model import Side

SYMBOL = "EURUSD"
LOTS = "0.10"
MAX_RPS = 50
WINDOW_S = 1.0
FILLED = 3


def exact_bound_s(per_connection: list[int]) -> float:
    return max(math.floor((n - 1) / MAX_RPS) * WINDOW_S for n in per_connection if n)


def _settle_s(followers: int, connections: int) -> float:
    per_conn = math.ceil(followers / connections)
    return math.floor((per_conn - 1) / MAX_RPS) * THROTTLE_SPAN_S * 1.2 + 1.5


async def run_case(followers: int, connections: int, trades: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cmamd-bench-fan-") as tmp_name:
        tmp = Path(tmp_name)
        frames_path = tmp / "frames.json"
        sim = await SimProcess.start(followers, tmp, frames=frames_path)
        described = sim.described
        try:
            daemon = daemon_for(sim, tmp, followers, connections)
            await daemon.start(timeout=600)
            master = await world.connect_master(described["url"], described)
            settle = _settle_s(followers, connections)
            await asyncio.sleep(THROTTLE_SPAN_S + 0.2)  # start-up's requests age out
            for _ in range(trades):
                position = await master.market(SYMBOL, Side.BUY, LOTS)
                await asyncio.sleep(settle)
                await master.close(position, master.volume(SYMBOL, LOTS))
                await asyncio.sleep(settle)
            await master.close_connection()
            await daemon.stop()
        finally:
            await sim.stop()
        recorded = json.loads(frames_path.read_text())
    master_id = next(a["account_id"] for a in described["accounts"] if a["name"] == world.MASTER)
    return analyse(recorded["frames"], master_id, followers, connections, trades)


def analyse(
    frames: list[dict[str, Any]], master_id: int, followers: int, connections: int, trades: int
) -> dict[str, Any]:
    copier_conns = {f["conn"] for f in frames if f["kind"] in ("new", "close")} - {
        f["conn"] for f in frames if f["kind"] == "new" and f["account"] == master_id
    }
    fills: dict[tuple[int, bool], float] = {}
    copy_of: dict[int, int] = {}  # follower position -> master position
    for f in frames:
        if f["kind"] != "exec" or f["type"] != FILLED or f["conn"] not in copier_conns:
            continue
        if f["account"] == master_id:
            fills.setdefault((f["position"], f["closing"]), f["at"])
        elif f["label"].startswith("cm:"):
            copy_of[f["position"]] = int(f["label"].rsplit(":", 1)[1].lstrip("p"))
    orders: dict[tuple[int, bool], list[tuple[float, int]]] = {}
    for f in frames:
        if f["dir"] != "in" or f["conn"] not in copier_conns or f["account"] == master_id:
            continue
        if f["kind"] == "new" and f["label"].startswith("cm:"):
            key = (int(f["label"].rsplit(":", 1)[1].lstrip("p")), False)
        elif f["kind"] == "close" and f["position"] in copy_of:
            key = (copy_of[f["position"]], True)
        else:
            continue
        orders.setdefault(key, []).append((f["at"], f["conn"]))
    trades_out: list[dict[str, Any]] = []
    for key, sent in sorted(orders.items(), key=lambda item: fills.get(item[0], 0.0)):
        if key not in fills:
            continue
        at = fills[key]
        times = sorted(t for t, _ in sent)
        per_conn = [sum(1 for _, c in sent if c == conn) for conn in copier_conns]
        bound = exact_bound_s(per_conn)
        last = times[-1] - at
        # the first window's burst: the last of the copies that may go at once, on the
        # busiest connection; every later window's copies follow it by whole spans
        burst = max(
            sorted(t for t, c in sent if c == conn)[min(n, MAX_RPS) - 1] - at
            for conn, n in zip(copier_conns, per_conn, strict=True)
            if n
        )
        trades_out.append(
            {
                "kind": "close" if key[1] else "open",
                "copies": len(sent),
                "first_10_ms": [round((t - at) * 1000, 2) for t in times[:10]],
                "first_ms": round((times[0] - at) * 1000, 3),
                "burst_ms": round(burst * 1000, 3),
                "last_s": round(last, 4),
                "exact_bound_s": bound,
                "last_vs_bound": round(last / bound, 4) if bound else None,
            }
        )
    rejected = sum(
        1
        for f in frames
        if f["kind"] == "error"
        and f["conn"] in copier_conns
        and f["code"] in ("REQUEST_FREQUENCY_EXCEEDED", "BLOCKED_PAYLOAD_TYPE")
    )

    def median(key: str) -> float | None:
        values = [t[key] for t in trades_out if t.get(key) is not None]
        return round(statistics.median(values), 4) if values else None

    def spread(key: str) -> list[float] | None:
        values = [t[key] for t in trades_out if t.get(key) is not None]
        return [min(values), max(values)] if values else None

    return {
        "followers": followers,
        "connections": connections,
        "trades": trades_out,
        "complete": sum(1 for t in trades_out if t["copies"] == followers),
        "expected": 2 * trades,
        "first_ms_median": median("first_ms"),
        "burst_ms_median": median("burst_ms"),
        "last_s_median": median("last_s"),
        "exact_bound_s": trades_out[0]["exact_bound_s"] if trades_out else None,
        "last_vs_bound_median": median("last_vs_bound"),
        "last_vs_bound_range": spread("last_vs_bound"),
        "rate_limit_rejections": rejected,
    }


async def run(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [await run_case(**case) for case in cases]

"""Scenario "wire": copy latency at the simulator's socket, the daemon against a bare copier.

The simulator runs in its own process and timestamps every frame at its socket through its
public frame hook; the daemon runs as ``cmamd run`` in another process (production config,
one follower, multiplier 1). The master trades from this process: open 0.10 lot, wait
``gap_s``, close, wait ``gap_s``. Latency per copy = the master's fill event written to the
copier's connection -> the follower's order frame received from that connection.

Each repeat runs the daemon phase and then, against the same simulator, the bare copier
(``bench/bare.py``) with the same trades: the ratio daemon/bare is taken within a repeat,
and the medians over repeats are reported with their spread. Daemon CPU per copy: its
utime+stime over the trading phase, minus its idle rate measured just before, per copy.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import world
from bench.bare import BareCopier
from bench.procs import DaemonProcess, SimProcess, cpu_seconds, rss_mib, thread_cpu_seconds
from bench.stats import summary
from cmamd.accounts.model import Side

SYMBOL = "EURUSD"
LOTS = "0.10"
FILLED = 3  # ORDER_FILLED


async def _trade(master: Any, trades: int, gap_s: float) -> None:
    for _ in range(trades):
        position = await master.market(SYMBOL, Side.BUY, LOTS)
        await asyncio.sleep(gap_s)
        await master.close(position, master.volume(SYMBOL, LOTS))
        await asyncio.sleep(gap_s)


def latencies(frames: list[dict[str, Any]], master_id: int) -> dict[int, dict[str, list[float]]]:
    """Per copier connection: "open" and "close" latencies in ms (fill out -> order in)."""
    master_fill: dict[tuple[int, int, bool], float] = {}
    copy_of: dict[tuple[int, int], int] = {}  # (conn, follower position) -> master position
    for f in frames:
        if f["kind"] != "exec" or f["type"] != FILLED:
            continue
        if f["account"] == master_id:
            master_fill.setdefault((f["conn"], f["position"], f["closing"]), f["at"])
        elif f["label"]:
            copy_of[(f["conn"], f["position"])] = _master_position(f["label"])
    out: dict[int, dict[str, list[float]]] = {}
    for f in frames:
        if f["dir"] != "in" or f["account"] == master_id:
            continue
        if f["kind"] == "new" and f["label"]:
            key = (f["conn"], _master_position(f["label"]), False)
            kind = "open"
        elif f["kind"] == "close" and (f["conn"], f["position"]) in copy_of:
            key = (f["conn"], copy_of[(f["conn"], f["position"])], True)
            kind = "close"
        else:
            continue
        if key in master_fill:
            ms = (f["at"] - master_fill[key]) * 1000
            out.setdefault(f["conn"], {"open": [], "close": []})[kind].append(ms)
    return out


def _master_position(label: str) -> int:
    # "cm:<master>:p<id>" (daemon) or "bare:<id>"
    return int(label.rsplit(":", 1)[1].lstrip("p"))


async def run(trades: int, gap_s: float, repeats: int, idle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cmamd-bench-wire-") as tmp_name:
        tmp = Path(tmp_name)
        frames_path = tmp / "frames.json"
        sim = await SimProcess.start(1, tmp, frames=frames_path)
        described = {**sim.described}
        conns: list[tuple[str, int]] = []  # (who, repeat) in connection order
        cpu: list[dict[str, float]] = []
        try:
            master = await world.connect_master(described["url"], described)
            config = world.write_config(
                tmp / "config.yaml",
                world.daemon_config(
                    described, described["port"], tmp / "state", tmp / "client_secret", 1
                ),
            )
            for repeat in range(repeats):
                daemon = DaemonProcess(config, tmp / "daemon.log")
                startup_s = await daemon.start()
                conns.append(("daemon", repeat))
                await _trade(master, 1, gap_s)  # warm-up, not measured separately
                await asyncio.sleep(1.2)
                c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
                m0 = thread_cpu_seconds(daemon.pid)
                await asyncio.sleep(idle_s)
                c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
                m1 = thread_cpu_seconds(daemon.pid)
                await _trade(master, trades, gap_s)
                await asyncio.sleep(0.3)
                c2, t2 = cpu_seconds(daemon.pid), time.monotonic()
                m2 = thread_cpu_seconds(daemon.pid)
                idle_rate = (c1 - c0) / (t1 - t0)
                busy = (c2 - c1) - idle_rate * (t2 - t1)
                loop_busy = (m2 - m1) - (m1 - m0) / (t1 - t0) * (t2 - t1)
                cpu.append(
                    {
                        "idle_cpu_pct": round(idle_rate * 100, 3),
                        "cpu_ms_per_copy": round(busy / (2 * trades) * 1000, 3),
                        "cpu_ms_per_copy_raw": round((c2 - c1) / (2 * trades) * 1000, 3),
                        # the event loop's thread alone (the state writer runs beside it)
                        "loop_cpu_ms_per_copy": round(loop_busy / (2 * trades) * 1000, 3),
                        "rss_mib": rss_mib(daemon.pid),
                        "startup_s": round(startup_s, 2),
                    }
                )
                await daemon.stop()
                bare = await BareCopier.start(described, world.MASTER, world.follower_name(1))
                conns.append(("bare", repeat))
                await _trade(master, 1 + trades, gap_s)
                await asyncio.sleep(0.3)
                await bare.close()
            await master.close_connection()
        finally:
            await sim.stop()
        frames = json.loads(frames_path.read_text())["frames"]
    return analyse(frames, described, conns, cpu, trades)


def analyse(
    frames: list[dict[str, Any]],
    described: dict[str, Any],
    conns: list[tuple[str, int]],
    cpu: list[dict[str, float]],
    trades: int,
) -> dict[str, Any]:
    master_id = next(a["account_id"] for a in described["accounts"] if a["name"] == world.MASTER)
    per_conn = latencies(frames, master_id)
    # copier connections in the order they opened: daemon, bare, daemon, bare, ...
    ordered = sorted(per_conn)
    repeats: list[dict[str, Any]] = []
    for (who, repeat), conn in zip(conns, ordered, strict=False):
        while len(repeats) <= repeat:
            repeats.append({})
        data = per_conn[conn]
        # the daemon's warm-up trade is in its lists: drop the first open and close
        skip = 1
        repeats[repeat][who] = {
            "open_ms": summary(data["open"][skip:], 3),
            "close_ms": summary(data["close"][skip:], 3),
        }
    rows = []
    for index, rep in enumerate(repeats):
        if "daemon" not in rep or "bare" not in rep:
            continue
        d, b = rep["daemon"]["open_ms"], rep["bare"]["open_ms"]
        rows.append(
            {
                "repeat": index,
                "daemon_open_p50_ms": d.get("p50"),
                "bare_open_p50_ms": b.get("p50"),
                "ratio_p50": round(d["p50"] / b["p50"], 2)
                if d.get("p50") and b.get("p50")
                else None,
                "daemon_close_p50_ms": rep["daemon"]["close_ms"].get("p50"),
                "bare_close_p50_ms": rep["bare"]["close_ms"].get("p50"),
                "daemon_open_count": d.get("count", 0),
                **cpu[index],
            }
        )

    def spread(key: str) -> dict[str, float | None]:
        values = [r[key] for r in rows if r.get(key) is not None]
        if not values:
            return {"median": None, "min": None, "max": None}
        return {
            "median": round(statistics.median(values), 3),
            "min": min(values),
            "max": max(values),
        }

    keys = (
        "daemon_open_p50_ms",
        "bare_open_p50_ms",
        "ratio_p50",
        "daemon_close_p50_ms",
        "bare_close_p50_ms",
        "cpu_ms_per_copy",
        "loop_cpu_ms_per_copy",
        "idle_cpu_pct",
    )
    return {
        "trades_per_repeat": trades,
        "repeats": rows,
        "median": {key: spread(key) for key in keys},
        "copies_expected_per_repeat": trades,
        "detail": repeats,
    }

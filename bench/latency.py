"""Scenario 1: copy latency and copy throughput, 1 master -> N hedged followers.

The simulator, the daemon and the master's own client share one event loop (as in the
e2e tests), all over loopback WebSockets. The master trades sequentially: open 0.10 lot
EURUSD, wait until every follower's copy is confirmed, close it, wait again, and so on.

Per copy, three latencies:
  daemon_ms  CopyReport.latency_ms: the daemon received the master's execution event ->
             the follower's fill confirmed back to the daemon (what the daemon logs)
  broker_ms  master order filled on the broker -> follower order filled on the broker
  e2e_ms     the master's client sends its request -> follower order filled on the broker
Per master trade, fanout_ms: master filled -> the last follower filled.

A phase has a ``gap_s`` between trades: 0 is back-to-back trading (sustained throughput:
the connection's request budget carries over from one trade to the next); a gap longer
than the throttle's span (1 s window + margin) makes every trade start with an empty
budget ("isolated").
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import world
from bench.hooks import Fill, FillRecorder
from bench.stats import summary
from cmamd.accounts.model import Side
from cmamd.connection.ratelimit import DEFAULT_MARGIN_S
from cmamd.item_keys import position_key
from cmamd.protocol import codec
from cmamd.replication.executor import CopyReport
from cmamd.replication.labels import label

SYMBOL = "EURUSD"
LOTS = "0.10"
THROTTLE_SPAN_S = 1.0 + DEFAULT_MARGIN_S  # cmamd.connection.ratelimit: 1 s window + margin


def isolated_gap(followers: int, max_rps: int = 50) -> float:
    """A pause between master trades long enough that each trade's ``followers`` requests
    find the connection's budget unspent: in any throttle span, the trades before it plus
    this one stay within ``max_rps`` (a 1.2 s pause when one trade alone fills it)."""
    longest = round(THROTTLE_SPAN_S + 0.1, 3)
    if followers * 2 > max_rps:
        return longest
    return min(longest, round(THROTTLE_SPAN_S * followers / (max_rps - followers) + 0.05, 3))


@dataclass
class Trade:
    kind: str  # open | close
    sent_at: float
    position_id: int = 0
    master_fill_at: float | None = None
    fills: list[Fill] = field(default_factory=list)
    reports: list[CopyReport] = field(default_factory=list)


class Collector:
    """Routes follower fills and copy reports to the trade in progress; wakes the waiter
    when the trade has all its copies."""

    def __init__(self, followers: int) -> None:
        self.followers = followers
        self.current: Trade | None = None
        self.complete = asyncio.Event()
        self.stray_fills = 0
        self.stray_reports = 0

    def begin(self, trade: Trade) -> None:
        self.current = trade
        self.complete.clear()

    def on_fill(self, fill: Fill) -> None:
        trade = self.current
        if trade is None:
            self.stray_fills += 1
            return
        if fill.account_id == world.MASTER_ID:
            trade.master_fill_at = fill.at
            return
        trade.fills.append(fill)
        self._check()

    def on_report(self, report: CopyReport) -> None:
        if self.current is None:
            self.stray_reports += 1
            return
        self.current.reports.append(report)
        self._check()

    def _check(self) -> None:
        trade = self.current
        if (
            trade is not None
            and len(trade.fills) >= self.followers
            and len(trade.reports) >= self.followers
        ):
            self.complete.set()


async def _trade(collector: Collector, trade: Trade, action: Any, timeout: float) -> None:
    collector.begin(trade)
    trade.sent_at = time.monotonic()
    trade.position_id = await action()
    await asyncio.wait_for(collector.complete.wait(), timeout)
    collector.current = None


async def _phase(
    master: Any, collector: Collector, round_trips: int, gap_s: float, followers: int
) -> tuple[list[Trade], float]:
    trades: list[Trade] = []
    # fan-out of N copies on one connection: ~N/45 s once the budget is spent, plus slack
    timeout = 30 + followers / 10
    started = time.monotonic()
    for _ in range(round_trips):
        opened = Trade("open", 0.0)
        await _trade(collector, opened, lambda: master.market(SYMBOL, Side.BUY, LOTS), timeout)
        trades.append(opened)
        if gap_s:
            await asyncio.sleep(gap_s)
        pid = opened.position_id
        closed = Trade("close", 0.0)

        async def close(pid: int = pid) -> int:
            await master.close(pid, master.volume(SYMBOL, LOTS))
            return pid

        await _trade(collector, closed, close, timeout)
        trades.append(closed)
        if gap_s:
            await asyncio.sleep(gap_s)
    wall = time.monotonic() - started - gap_s * 2 * round_trips
    return trades, wall


def _phase_result(trades: list[Trade], wall_s: float, gap_s: float) -> dict[str, Any]:
    result: dict[str, Any] = {"gap_s": gap_s, "round_trips": len(trades) // 2}
    problems: list[str] = []
    for kind in ("open", "close"):
        daemon_ms: list[float] = []
        broker_ms: list[float] = []
        e2e_ms: list[float] = []
        fanout_ms: list[float] = []
        for trade in (t for t in trades if t.kind == kind):
            expected = label(world.MASTER_ID, position_key(trade.position_id))
            closing = kind == "close"
            wrong = [f for f in trade.fills if f.label != expected or f.closing != closing]
            if wrong:
                problems.append(f"{kind} p{trade.position_id}: {len(wrong)} unexpected fills")
            daemon_ms += [r.latency_ms for r in trade.reports]
            e2e_ms += [(f.at - trade.sent_at) * 1000 for f in trade.fills]
            if trade.master_fill_at is not None:
                broker_ms += [(f.at - trade.master_fill_at) * 1000 for f in trade.fills]
                fanout_ms.append((max(f.at for f in trade.fills) - trade.master_fill_at) * 1000)
        result[kind] = {
            "daemon_ms": summary(daemon_ms),
            "broker_ms": summary(broker_ms),
            "e2e_ms": summary(e2e_ms),
            "fanout_ms": summary(fanout_ms),
        }
    copies = sum(len(t.fills) for t in trades)
    outcomes = [r.outcome for t in trades for r in t.reports]
    result.update(
        copies=copies,
        wall_s=round(wall_s, 3),
        copies_per_s=round(copies / wall_s, 1) if wall_s > 0 else None,
        not_done=sum(1 for o in outcomes if o != "done"),
        problems=problems,
    )
    return result


def _max_in_window(
    sim: Any, conn_ids: set[int], begin: float, end: float, window_s: float = 1.0
) -> int:
    """The most requests (heartbeats excluded) the simulator received on any one of
    ``conn_ids`` within any ``window_s`` inside [begin, end] (cf. max_requests_in_any_window)."""
    heartbeat = codec.HEARTBEAT_PAYLOAD_TYPE
    best = 0
    for conn_id in conn_ids:
        times = [
            r.at
            for r in sim.record
            if r.conn_id == conn_id and r.payload_type != heartbeat and begin <= r.at <= end
        ]
        start = 0
        for index, at in enumerate(times):
            while at - times[start] >= window_s:
                start += 1
            best = max(best, index - start + 1)
    return best


async def run_case(
    followers: int,
    phases: list[dict[str, Any]],
    *,
    connections: int = 1,
    warmup_round_trips: int = 1,
) -> dict[str, Any]:
    """One daemon with ``followers`` followers over ``connections`` connections; each phase
    is {"name", "round_trips", "gap_s"}."""
    sim = await world.start_sim(followers)
    recorder = FillRecorder(sim)
    collector = Collector(followers)
    recorder.add_listener(collector.on_fill)
    described = sim.describe()
    with tempfile.TemporaryDirectory(prefix="cmamd-bench-") as tmp:
        tmp_path = Path(tmp)
        config = world.write_config(
            tmp_path / "config.yaml",
            world.daemon_config(
                described,
                sim.port,
                tmp_path / "state",
                tmp_path / "client_secret",
                followers,
                connections=connections,
            ),
        )
        daemon = world.BenchDaemon(config, on_report=collector.on_report, keep_reports=False)
        master = None
        try:
            t0 = time.monotonic()
            await daemon.start()
            startup_s = time.monotonic() - t0
            master = await world.connect_master(sim.url, described)
            await _phase(master, collector, warmup_round_trips, 0.0, followers)
            await asyncio.sleep(1.2)  # the warm-up's requests age out of the budget window
            assert daemon.daemon is not None and daemon.daemon.pool is not None
            pool = daemon.daemon.pool
            conn_ids = {
                c.conn_id for c in sim.connections if c.authorised_accounts - {world.MASTER_ID}
            }
            results: dict[str, Any] = {}
            for phase in phases:
                waits = sum(c.stats["throttled_waits"] for c in pool.connections)
                rejections = sim.rate_limit_rejections
                begin = time.monotonic()
                trades, wall = await _phase(
                    master, collector, phase["round_trips"], phase["gap_s"], followers
                )
                result = _phase_result(trades, wall, phase["gap_s"])
                result.update(
                    max_requests_in_any_1s=_max_in_window(sim, conn_ids, begin, time.monotonic()),
                    throttled_waits=sum(c.stats["throttled_waits"] for c in pool.connections)
                    - waits,
                    rate_limit_rejections=sim.rate_limit_rejections - rejections,
                )
                results[phase["name"]] = result
                await asyncio.sleep(1.2)
            throttle = {
                "run_max_requests_in_any_1s": _max_in_window(sim, conn_ids, 0, math.inf),
                "rate_limit_rejections": sim.rate_limit_rejections,
            }
        finally:
            if master is not None:
                await master.close_connection()
            await daemon.stop()
            await sim.stop()
    return {
        "followers": followers,
        "connections": connections,
        "startup_s": round(startup_s, 2),
        "phases": results,
        "daemon_connections": len(conn_ids),
        **throttle,
        "stray_fills": collector.stray_fills,
        "stray_reports": collector.stray_reports,
    }

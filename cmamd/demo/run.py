"""The demo's orchestration: simulator, daemon, scripted master, final book and verdict."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from cmamd.accounts.model import OrderKind, Side
from cmamd.daemon.launch import open_daemon
from cmamd.daemon.supervisor import Daemon
from cmamd.demo.config import sim_daemon_config
from cmamd.demo.master import MasterTrader
from cmamd.demo.verdict import MasterTrade, compare, expected_copy
from cmamd.demo.view import DemoView, describe_position
from cmamd.item_keys import order_key, position_key
from cmamd.replication.labels import label
from cmamd.sim import SimConfig, SimServer
from cmamd.sim.snapshots import Position

MASTER = "master"
FOLLOWERS: dict[str, dict[str, Any]] = {
    "follower-hedged": {"volume": {"mode": "multiplier", "value": 2}},
    "follower-suffix": {
        "volume": {"mode": "equity_ratio", "value": 1},
        "symbols": {"add_suffix": ".m"},
    },
    "follower-netted": {"volume": {"mode": "multiplier", "value": 1}, "reverse": True},
}


DEMO_RULES = [
    {
        "name": "demo",
        "source": MASTER,
        "destinations": [{"account": name, **rule} for name, rule in FOLLOWERS.items()],
    }
]


@dataclass
class DemoWorld:
    sim: SimServer
    daemon: Daemon
    master: MasterTrader
    ids: dict[str, int]
    view: DemoView
    trades: dict[int, MasterTrade]

    def equity(self, name: str) -> Decimal:
        account = self.ids[name]
        return self.sim.broker.trader(account).balance + self.sim.broker.unrealized_pnl(account)

    def opened(self, position_id: int, symbol: str, origin_order: int | None = None) -> None:
        position = next(
            p for p in self.sim.broker.positions(self.ids[MASTER]) if p.position_id == position_id
        )
        self.trades[position_id] = MasterTrade(
            position,
            symbol,
            position.volume,
            self.equity(MASTER),
            {name: self.equity(name) for name in FOLLOWERS},
            origin_order,
        )

    async def settle(self, quiet_s: float = 0.15, timeout_s: float = 10.0) -> None:
        """Wait until the daemon has had nothing to do for ``quiet_s``."""
        replicator = self.daemon.replicator
        if replicator is None:
            raise RuntimeError("the demo's daemon has not started replicating")
        await replicator.queue.wait_quiet(quiet_s, timeout_s)


async def master_script(world: DemoWorld) -> None:
    master, view, sim = world.master, world.view, world.sim

    view.step("buys 1.00 lot EURUSD, SL 50 pips, TP 100 pips")
    eurusd = await master.market("EURUSD", Side.BUY, "1.00", sl_distance=0.0050, tp_distance=0.0100)
    world.opened(eurusd, "EURUSD")
    await world.settle()

    view.step("sells 0.30 lots XAUUSD (30 oz), SL $20")
    gold = await master.market("XAUUSD", Side.SELL, "0.30", sl_distance=20.0)
    world.opened(gold, "XAUUSD")
    await world.settle()

    view.step("closes 0.40 lots of EURUSD (partial close)")
    await master.close(eurusd, master.volume("EURUSD", "0.40"))
    await world.settle()

    view.step("moves the EURUSD stop loss to 1.07700 and take profit to 1.09500")
    await master.amend_sl_tp(eurusd, 1.07700, 1.09500)
    await world.settle()

    view.step("places a buy limit, 2.0 lots US500 @ 5180.00")
    order = await master.pending("US500", Side.BUY, OrderKind.LIMIT, "2.0", 5180.00)
    await world.settle()

    view.step("moves the limit to 5190.00")
    await master.amend_pending(order, OrderKind.LIMIT, master.volume("US500", "2.0"), 5190.00)
    await world.settle()

    view.step("(market) US500 drops to 5189.00/5189.50: the limit orders fill")
    filled = master.expect_fill(order)
    sim.set_price("US500", 5189.00, 5189.50)
    sim.set_price("US500.m", 5189.00, 5189.50)
    us500 = await asyncio.wait_for(filled, 10)
    world.opened(us500, "US500", origin_order=order)
    await world.settle()
    view.note("each follower's pending copy filled on its own broker: adopted, no new order")

    view.step("closes XAUUSD")
    await master.close(gold, master.volume("XAUUSD", "0.30"))
    await world.settle()


def final_book(world: DemoWorld) -> list[str]:
    """Print master and followers side by side; return the problems found (empty = pass).

    Judged from the rules as the demo wrote them and the simulator's own symbols, never
    from the daemon's parsed config or symbol tables (see verdict.py).
    """
    broker = world.sim.broker
    master_positions = broker.positions(world.ids[MASTER])
    master_specs = {s.name: s for s in broker.symbols(world.ids[MASTER])}
    problems: list[str] = []
    columns: list[tuple[str, list[str]]] = [
        (
            MASTER,
            [
                describe_position(p, master_specs.get(_name(master_specs, p.symbol_id)))
                for p in master_positions
            ],
        )
    ]
    for follower, rule in FOLLOWERS.items():
        account = world.ids[follower]
        positions = broker.positions(account)
        specs = {s.name: s for s in broker.symbols(account)}
        names = {s.symbol_id: s.name for s in specs.values()}
        cells: list[str] = []
        claimed: set[int] = set()
        for master_position in master_positions:
            trade = world.trades[master_position.position_id]
            expected = expected_copy(follower, rule, trade, master_position, master_specs, specs)
            if isinstance(expected, str):
                cells.append(f"(not copied: {expected})")
                continue
            copies = [p for p in positions if _copies(p, world.ids[MASTER], trade)]
            claimed.update(p.position_id for p in copies)
            issues = compare(expected, copies, names)
            cells.append(
                ", ".join(
                    describe_position(p, specs.get(names.get(p.symbol_id, ""))) for p in copies
                )
                or "(missing)"
            )
            problems += [f"{follower}: {trade.symbol}: {issue}" for issue in issues]
        for extra in (p for p in positions if p.position_id not in claimed):
            extra_spec = specs.get(names.get(extra.symbol_id, ""))
            problems.append(
                f"{follower}: unexpected position {describe_position(extra, extra_spec)}"
            )
        for order in broker.orders(account):
            problems.append(f"{follower}: unexpected pending order #{order.order_id}")
        columns.append((follower, cells))
    world.view.book("Final positions (master and its copies, side by side):", columns)
    return problems


def _copies(position: Position, master_id: int, trade: MasterTrade) -> bool:
    """A follower position is a copy of the trade if it carries the position's label, or
    the label of the pending order that opened it (that copy filled on its own)."""
    keys = {position_key(trade.position.position_id)}
    if trade.origin_order is not None:
        keys.add(order_key(trade.origin_order))
    return position.label in {label(master_id, key) for key in keys}


def _name(specs: dict[str, Any], symbol_id: int) -> str:
    return next((n for n, s in specs.items() if s.symbol_id == symbol_id), "")


async def run_demo(*, keep: bool = False, state_dir: str | None = None) -> int:
    view = DemoView()
    with tempfile.TemporaryDirectory(prefix="cmamd-demo-") as tmp:
        work = Path(tmp)
        async with SimServer(SimConfig.default()) as sim:
            described = sim.describe()
            ids = {a["name"]: a["account_id"] for a in described["accounts"]}
            config_path = work / "config.yaml"
            config = sim_daemon_config(
                described,
                Path(state_dir or work / "state"),
                work / "client_secret",
                [MASTER, *FOLLOWERS],
                DEMO_RULES,
                logging={"level": "warning", "format": "console"},
            )
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            view.line(f"cmamd demo: simulated broker at {sim.url}, config {config_path}")
            for name, rule in FOLLOWERS.items():
                view.line(
                    f"  {MASTER} -> {name}: {yaml.safe_dump(rule, default_flow_style=True).strip()}"
                )
            daemon = open_daemon(config_path, environ={}, on_report=view.copy)
            daemon_task = asyncio.create_task(daemon.run())
            await asyncio.wait_for(daemon.started.wait(), 30)
            view.line(f"daemon ready: {daemon.status_line()}")
            master_account = next(a for a in described["accounts"] if a["name"] == MASTER)
            master = await MasterTrader.connect(
                sim.url,
                described["client_id"],
                described["client_secret"],
                ids[MASTER],
                master_account["access_token"],
            )
            world = DemoWorld(sim, daemon, master, ids, view, {})
            try:
                await master_script(world)
                problems = final_book(world)
                latencies = sorted(view.latencies)
                if latencies:
                    p50 = latencies[len(latencies) // 2]
                    view.line(
                        f"\n{len(latencies)} copies, latency median {p50:.1f} ms,"
                        f" max {latencies[-1]:.1f} ms"
                        " (master event received -> follower fill confirmed)"
                    )
                if problems:
                    view.line("\nVERDICT: FAIL")
                    for problem in problems:
                        view.line(f"  - {problem}")
                else:
                    view.line(
                        "\nVERDICT: PASS - every follower holds exactly what its rule prescribes"
                    )
                if keep:
                    view.line(
                        f"\n--keep: simulator at {sim.url} (client_id {described['client_id']}); "
                        "daemon running. Ctrl-C to stop."
                    )
                    await _wait_for_interrupt()
            finally:
                await master.close_connection()
                daemon.request_stop()
                await asyncio.wait_for(daemon_task, 60)
    return 1 if problems else 0


async def _wait_for_interrupt() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()

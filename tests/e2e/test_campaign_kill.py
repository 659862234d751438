"""The kill campaign: SIGKILL the daemon at random instants of a random master session.

The daemon runs as a real process on one state dir; it is killed (and restarted at once)
at seeded random instants, and sometimes restarted cleanly, while the master trades
through its own client: opens on both sides, partial closes, SL/TP amends, pending orders
placed, amended, cancelled and filled; follower copies are closed or cancelled by hand.
At the end every follower must hold exactly what its rule prescribes, read through a
connection of the test's own. One summary line is printed; every count must be 0.

Short by default (CI: 150 actions, 12 kills, ~10 s); ``--full-campaigns``: 320 actions with
24 kills. ``CMAMD_CAMPAIGN_SEED`` replays the printed seed (the actions drawn; their timing
against the daemon varies).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from cmamd.accounts.model import OrderKind, Side
from cmamd.demo.master import MasterTrader
from cmamd.protocol.codec import Envelope
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.replication.labels import parse_label
from cmamd.sim import SimServer

from .campaign import (
    FollowerRule,
    HandActions,
    Observer,
    Tally,
    transient_duplicates,
    verdict,
)
from .kit import DaemonProcess, connect_master, eventually

READY = '"event": "ready"'
LOT = 100_000  # EURUSD/GBPUSD/USDJPY minimum and step (0.01 lot)
JPY_BID, JPY_ASK = 150.000, 150.012


class Campaign:
    def __init__(
        self,
        sim: SimServer,
        ids: dict[str, int],
        master: MasterTrader,
        observer: Observer,
        daemon: DaemonProcess,
        rng: random.Random,
        followers: list[FollowerRule],
    ) -> None:
        self.sim = sim
        self.ids = ids
        self.master = master
        self.observer = observer
        self.daemon = daemon
        self.rng = rng
        self.followers = followers
        self.hand = HandActions()
        self.origins: dict[int, int] = {}  # master position id -> pending order it filled from
        self.positions: dict[int, int] = {}  # master position id -> volume
        self.orders: dict[int, tuple[int, float]] = {}  # master order id -> volume, price
        self.starts = 0
        self._log_mark = 0
        self.kills = 0
        self.restarts = 0
        master.connection.add_listener(self._on_master_event)

    def _on_master_event(self, envelope: Envelope) -> None:
        event = envelope.message
        if not (
            isinstance(event, pb.ProtoOAExecutionEvent)
            and event.ctidTraderAccountId == self.master.account_id
        ):
            return
        if event.executionType == model_pb2.ORDER_FILLED and event.order.orderType in (
            model_pb2.LIMIT,
            model_pb2.STOP,
        ):
            self.origins[event.position.positionId] = event.order.orderId
            self.orders.pop(event.order.orderId, None)
            self.positions[event.position.positionId] = event.position.tradeData.volume

    # the daemon ------------------------------------------------------------------------
    async def start_daemon(self, wait_ready: bool) -> None:
        self._log_mark = len(self.daemon.log_text()) if self.daemon.log_path.exists() else 0
        self.daemon.start()
        self.starts += 1
        if wait_ready:
            await self.wait_ready()

    async def wait_ready(self) -> None:
        # the running process's own READY (one killed while starting never logs one)
        await eventually(lambda: READY in self.daemon.log_text()[self._log_mark :], 30, "ready")

    async def kill(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, 0.05))  # a random instant of its work
        self.daemon.kill()
        self.kills += 1
        await self.start_daemon(wait_ready=False)  # the session goes on while it starts

    async def clean_restart(self) -> None:
        await self.wait_ready()
        self.daemon.signal(signal.SIGTERM)
        assert await self.daemon.wait() == 0
        self.restarts += 1
        await self.start_daemon(wait_ready=False)

    # master actions --------------------------------------------------------------------
    async def act(self) -> str:
        choices: list[tuple[str, int]] = [("open", 5), ("pending", 2)]
        if self.positions:
            choices += [("partial", 2), ("close", 2), ("sltp", 3), ("hand_close", 1)]
        if self.orders:
            choices += [("amend_pending", 2), ("cancel", 1), ("fill", 2), ("hand_cancel", 1)]
        names = [name for name, _ in choices]
        weights = [weight for _, weight in choices]
        action = self.rng.choices(names, weights)[0]
        await getattr(self, f"_{action}")()
        return action

    async def _open(self) -> None:
        side = self.rng.choice([Side.BUY, Side.SELL])
        symbol = self.rng.choice(["EURUSD", "GBPUSD"])
        lots = self.rng.randint(1, 5) / 100
        levels: dict[str, Any] = {}
        if self.rng.random() < 0.6:
            levels = {
                "sl_distance": self.rng.randint(50, 200) / 10_000,
                "tp_distance": self.rng.randint(50, 200) / 10_000,
            }
        position = await self.master.market(symbol, side, lots, **levels)
        self.positions[position] = self.master.volume(symbol, lots)

    async def _partial(self) -> None:
        position, volume = self.rng.choice(sorted(self.positions.items()))
        if volume <= LOT:
            return await self._close()
        part = self.rng.randint(1, volume // LOT - 1) * LOT
        await self.master.close(position, part)
        self.positions[position] = volume - part
        return None

    async def _close(self) -> None:
        position, volume = self.rng.choice(sorted(self.positions.items()))
        await self.master.close(position, volume)
        del self.positions[position]

    async def _sltp(self) -> None:
        position = self.rng.choice(sorted(self.positions))
        master = await self.observer.holdings(self.master.account_id)
        held = next((p for p in master.positions if p.position_id == position), None)
        if held is None or held.symbol_id == self.master.symbols["USDJPY"].symbol_id:
            return
        step = self.rng.randint(30, 150) / 10_000
        entry = held.entry_price
        stop, target = (
            (entry - step, entry + step) if held.side is Side.BUY else (entry + step, entry - step)
        )
        await self.master.amend_sl_tp(position, round(stop, 5), round(target, 5))

    async def _pending(self) -> None:
        price = round(self.rng.uniform(148.5, 149.9), 3)
        lots = self.rng.randint(1, 4) / 100
        order = await self.master.pending("USDJPY", Side.BUY, OrderKind.LIMIT, lots, price)
        self.orders[order] = (self.master.volume("USDJPY", lots), price)

    async def _amend_pending(self) -> None:
        order = self.rng.choice(sorted(self.orders))
        volume = self.rng.randint(1, 4) * LOT
        price = round(self.rng.uniform(148.5, 149.9), 3)
        await self.master.amend_pending(order, OrderKind.LIMIT, volume, price)
        self.orders[order] = (volume, price)

    async def _cancel(self) -> None:
        order = self.rng.choice(sorted(self.orders))
        await self.master.cancel(order)
        del self.orders[order]

    async def _fill(self) -> None:
        # the market falls to the highest resting buy limit: it (and any at its price) fills,
        # on the master and on the followers alike, then the market returns
        eligible = [
            (price, order)
            for order, (_, price) in self.orders.items()
            if not any((f.account_id, order) in self.hand.cancelled for f in self.followers)
        ]
        if not eligible or max(eligible)[0] != max(p for p, _ in self.orders.values()):
            return
        price, order = max(eligible)
        fill = self.master.expect_fill(order)
        self.sim.set_price("USDJPY", round(price - 0.012, 3), price)
        await asyncio.wait_for(fill, 10)
        self.sim.set_price("USDJPY", JPY_BID, JPY_ASK)

    async def _hand_close(self) -> None:
        rule = self.rng.choice(self.followers)
        held = await self.observer.holdings(rule.account_id)
        mine = [
            p
            for p in held.positions
            if (parsed := parse_label(p.label)) is not None and parsed[1].startswith("p")
        ]
        if not mine:
            return
        copy = self.rng.choice(mine)
        parsed = parse_label(copy.label)
        assert parsed is not None
        try:
            self.sim.close_position(rule.account_id, copy.position_id)
        except Exception:
            return  # closed meanwhile (the master closed it)
        self.hand.closed.add((rule.account_id, int(parsed[1][1:])))

    async def _hand_cancel(self) -> None:
        rule = self.rng.choice(self.followers)
        held = await self.observer.holdings(rule.account_id)
        if not held.orders:
            return
        copy = self.rng.choice(held.orders)
        parsed = parse_label(copy.label)
        assert parsed is not None
        try:
            self.sim.cancel_pending_order(rule.account_id, copy.order_id)
        except Exception:
            return
        self.hand.cancelled.add((rule.account_id, int(parsed[1][1:])))

    # the verdict -----------------------------------------------------------------------
    async def tally(self, since_ms: int) -> Tally:
        master = await self.observer.holdings(self.master.account_id)
        followers = {f: await self.observer.holdings(f.account_id) for f in self.followers}
        tally = verdict(self.master.account_id, master, self.origins, followers, self.hand)
        now_ms = int(time.time() * 1000) + 60_000
        for rule in self.followers:
            history = await self.observer.order_history(rule.account_id, since_ms, now_ms)
            transient_duplicates(tally, rule, self.master.account_id, history, set(self.origins))
        return tally


async def test_kill_campaign_converges_without_duplicates_orphans_or_misses(
    sim: SimServer,
    ids: dict[str, int],
    make_config: Any,
    tmp_path: Path,
    full_campaigns: bool,
    capsys: Any,
) -> None:
    seed = int(os.environ.get("CMAMD_CAMPAIGN_SEED", random.randrange(1 << 32)))
    actions, kills, restarts = (320, 24, 3) if full_campaigns else (150, 12, 2)
    rng = random.Random(seed)
    print(f"kill campaign seed={seed} (rerun with CMAMD_CAMPAIGN_SEED={seed})")
    sim.pause_prices()  # fills at known prices: copies' levels are comparable exactly
    rules = [
        {
            "name": "r",
            "source": "master",
            "destinations": [
                {"account": "follower-hedged", "max_delay_s": 600},
                {
                    "account": "follower-suffix",
                    "symbols": {"add_suffix": ".m"},
                    "volume": {"mode": "multiplier", "value": 2},
                    "max_delay_s": 600,
                },
            ],
        }
    ]
    config = make_config(["master", "follower-hedged", "follower-suffix"], rules)
    described = sim.describe()
    tokens = {a["account_id"]: a["access_token"] for a in described["accounts"]}
    followers = [
        FollowerRule("follower-hedged", ids["follower-hedged"], 1),
        FollowerRule("follower-suffix", ids["follower-suffix"], 2),
    ]
    master = await connect_master(sim)
    observer = await Observer.connect(
        sim.url,
        described["client_id"],
        described["client_secret"],
        {f.account_id: tokens[f.account_id] for f in followers}
        | {ids["master"]: tokens[ids["master"]]},
    )
    daemon = DaemonProcess(config, {}, tmp_path / "daemon.log")
    campaign = Campaign(sim, ids, master, observer, daemon, rng, followers)
    kill_at = set(rng.sample(range(1, actions), kills))
    restart_at = set(rng.sample(sorted(set(range(1, actions)) - kill_at), restarts))
    started = time.monotonic()
    since_ms = int(time.time() * 1000) - 60_000
    try:
        await campaign.start_daemon(wait_ready=True)
        done: dict[str, int] = {}
        for number in range(actions):
            action = await campaign.act()
            done[action] = done.get(action, 0) + 1
            if number in kill_at:
                await campaign.kill()
            elif number in restart_at:
                await campaign.clean_restart()
            await asyncio.sleep(rng.uniform(0, 0.02))
        await campaign.wait_ready()
        # converged = clean on two looks 0.5 s apart (a first clean look could still be
        # followed by a late duplicate), within a deadline
        deadline = time.monotonic() + 30
        tally, stable = await campaign.tally(since_ms), 0
        while stable < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            tally = await campaign.tally(since_ms)
            stable = stable + 1 if tally.clean else 0
        line = tally.line(actions, campaign.kills, campaign.restarts, seed)
        with capsys.disabled():
            print(f"\n{line} ({time.monotonic() - started:.0f} s; {done})")
        assert tally.clean, "\n".join([line, *tally.details])
        assert await daemon.terminate() == 0
    finally:
        daemon.kill()
        await observer.close()
        await master.close_connection()

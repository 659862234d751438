"""The network campaign's machinery: a randomised master session, random network faults
from the simulator, and the verdict (followers hold what the rules prescribe; no
connection ever went above ``max_rps`` in any 1-second window).

Everything random comes from one seeded ``random.Random``; the seed is printed with the
summary line, and ``CMAMD_CAMPAIGN_SEED`` replays a run.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polling import reached

from cmamd.protocol.codec import payload_type_of
from cmamd.protocol.errors import OrderError
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication.labels import label
from cmamd.sim import SimServer

TRADE_TYPES = frozenset(
    payload_type_of(cls)
    for cls in (
        pb.ProtoOANewOrderReq,
        pb.ProtoOAClosePositionReq,
        pb.ProtoOAAmendPositionSLTPReq,
        pb.ProtoOAAmendOrderReq,
        pb.ProtoOACancelOrderReq,
    )
)
# master symbol -> (volume step, price offset that keeps a pending order from filling)
SYMBOLS = {"EURUSD": (100_000, 0.05), "XAUUSD": (100, 200.0)}
FAULTS = ("drop", "close", "close_after_trade", "delay", "swallow")


def campaign_seed() -> int:
    given = os.environ.get("CMAMD_CAMPAIGN_SEED")
    return int(given) if given else random.SystemRandom().randrange(1 << 32)


@dataclass
class CampaignLog:
    actions: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    refused: int = 0


class MasterSession:
    """Random trading on the master account through the simulator's own API."""

    def __init__(self, sim: SimServer, master: int, rng: random.Random, log: CampaignLog):
        self.sim, self.master, self.rng, self.log = sim, master, rng, log

    def step(self) -> None:
        positions = self.sim.broker.positions(self.master)
        orders = self.sim.broker.orders(self.master)
        choices = ["open", "open", "pending"]
        if positions:
            choices += ["close", "partial", "sltp"]
        if orders:
            choices += ["cancel", "amend_order"]
        action = self.rng.choice(choices)
        try:
            self._do(action, positions, orders)
            self.log.actions[action] += 1
        except OrderError:
            self.log.refused += 1  # e.g. a partial close below the minimum: the broker says no

    def _do(self, action: str, positions: list[Any], orders: list[Any]) -> None:
        rng, sim, master = self.rng, self.sim, self.master
        symbol = rng.choice(sorted(SYMBOLS))
        step, offset = SYMBOLS[symbol]
        side = rng.choice(["buy", "sell"])
        if action == "open":
            sim.place_market_order(master, symbol, side, step * rng.randint(1, 5))
        elif action == "pending":
            spec = sim.broker.symbol_named(master, symbol)
            price = spec.bid - offset if side == "buy" else spec.ask + offset
            sim.place_pending_order(
                master, symbol, side, "limit", step * rng.randint(1, 3), round(price, spec.digits)
            )
        elif action == "close":
            sim.close_position(master, rng.choice(positions).position_id)
        elif action == "partial":
            position = rng.choice(positions)
            step = SYMBOLS["EURUSD" if position.volume >= 100_000 else "XAUUSD"][0]
            if position.volume > step:
                sim.close_position(master, position.position_id, step)
        elif action == "sltp":
            position = rng.choice(positions)
            spec = next(s for s in sim.broker.symbols(master) if s.symbol_id == position.symbol_id)
            distance = 0.01 if spec.digits == 5 else 50.0
            below, above = position.entry_price - distance, position.entry_price + distance
            sl, tp = (below, above) if position.side.value == "buy" else (above, below)
            sim.amend_position_sltp(
                master,
                position.position_id,
                stop_loss=round(sl, spec.digits),
                take_profit=round(tp, spec.digits),
            )
        elif action == "cancel":
            sim.cancel_pending_order(master, rng.choice(orders).order_id)
        elif action == "amend_order":
            order = rng.choice(orders)
            step = SYMBOLS["EURUSD" if order.volume >= 100_000 else "XAUUSD"][0]
            sim.amend_pending_order(master, order.order_id, volume=order.volume + step)


async def inject_faults(
    sim: SimServer, rng: random.Random, log: CampaignLog, pause: tuple[float, float]
) -> None:
    """Until cancelled: a random network fault every ``pause`` seconds (uniform)."""
    try:
        while True:
            await asyncio.sleep(rng.uniform(*pause))
            fault = rng.choice(FAULTS)
            log.faults[fault] += 1
            if fault == "drop":
                sim.drop_connections()
            elif fault == "close":
                sim.close_connections()
            elif fault == "close_after_trade":
                sim.close_after_next(1, TRADE_TYPES)
            elif fault == "delay":
                sim.delay_responses(rng.uniform(0.2, 1.5), TRADE_TYPES)
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                sim.delay_responses(0)
            elif fault == "swallow":
                sim.swallow_next(rng.randint(1, 2), TRADE_TYPES)
    finally:
        sim.delay_responses(0)
        sim.swallow_next(0)
        sim.close_after_next(0)


def expected_items(sim: SimServer, master: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every follower must hold: the master's positions and orders by copy label."""
    positions = {label(master, f"p{p.position_id}"): p for p in sim.broker.positions(master)}
    orders = {label(master, f"o{o.order_id}"): o for o in sim.broker.orders(master)}
    return positions, orders


def follower_mismatches(sim: SimServer, master: int, follower: int) -> list[str]:
    """Differences between what the follower holds and what 1:1 copying prescribes."""
    want_positions, want_orders = expected_items(sim, master)
    return _copy_mismatches(
        "position", want_positions, sim.broker.positions(follower), _position_differs
    ) + _copy_mismatches("order", want_orders, sim.broker.orders(follower), _order_differs)


def _position_differs(copy: Any, wanted: Any) -> str | None:
    if (copy.volume, copy.side) == (wanted.volume, wanted.side):
        return None
    return f"{copy.side.value} {copy.volume}, master {wanted.side.value} {wanted.volume}"


def _order_differs(copy: Any, wanted: Any) -> str | None:
    return None if copy.volume == wanted.volume else f"{copy.volume}, master {wanted.volume}"


def _copy_mismatches(
    kind: str,
    wanted: dict[str, Any],
    held: list[Any],
    differs: Callable[[Any, Any], str | None],
) -> list[str]:
    """One line per label whose copies are not exactly one copy equal to the master's item."""
    by_label: dict[str, list[Any]] = {}
    for item in held:
        by_label.setdefault(item.label, []).append(item)
    problems = []
    for key in sorted(set(wanted) | set(by_label)):
        copies, master_item = by_label.get(key, []), wanted.get(key)
        if master_item is None:
            problems.append(f"{kind} {key}: {len(copies)} copies of a master {kind} gone")
        elif len(copies) != 1:
            problems.append(f"{kind} {key}: {len(copies)} copies")
        elif (difference := differs(copies[0], master_item)) is not None:
            problems.append(f"{kind} {key}: {difference}")
    return problems


def worst_window(sim: SimServer) -> int:
    """The most requests any connection sent in any 1-second window."""
    return max((sim.max_requests_in_any_window(c.conn_id) for c in sim.connections), default=0)


async def converge(
    sim: SimServer, master: int, followers: dict[str, int], timeout: float
) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}

    def converged() -> bool:
        problems.update(
            (name, follower_mismatches(sim, master, account)) for name, account in followers.items()
        )
        return not any(problems.values())

    await reached(converged, timeout, 0.1)
    return problems

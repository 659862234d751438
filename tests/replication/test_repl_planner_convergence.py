"""Property: a plan converges in one step, whatever the starting state.

Random (seeded, reproducible) masters, followers, links and rules are reconciled with
``plan_all``; the intents are executed by the in-memory broker; planning again must yield
no intent, and a third time no link change. The broker also checks each intent against
the state (closing more than a position holds, cancelling an order twice — which two keys
claiming the same follower item would do — raise), so the property covers ownership too.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from cmamd.accounts.model import (
    AccountKind,
    OrderKind,
    PendingOrder,
    Position,
    Side,
    SymbolSpec,
)
from cmamd.replication.intents import OpenPosition, PlacePendingOrder
from cmamd.replication.labels import label
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.origins import origins_for
from cmamd.replication.planner import plan_all, plan_key

from .repl_kit import (
    EURUSD,
    NOW_MS,
    STARTED_MS,
    US30,
    XAUUSD,
    Broker,
    F,
    M,
    converge,
    follower,
    intents_of,
    master,
    no_rate,
    target,
)

FOLLOWER_ID = {EURUSD.symbol_id: 11, XAUUSD.symbol_id: 12, US30.symbol_id: 13}
BASE_PRICE = {EURUSD.symbol_id: 1.1, XAUUSD.symbol_id: 2000.0, US30.symbol_id: 35000.0}
VOLUME_RULES: list[dict[str, Any]] = [
    {"value": "1"},
    {"value": "0.37"},
    {"value": "2.5", "max_lots": "3"},
    {"value": "0.1", "min_lots": "0.02"},
    {"value": "0.004", "force_min": True},
    {"mode": "fixed_lots", "value": "0.05"},
    {"mode": "balance_ratio", "value": "1.3"},
]


def spec_of(symbol_id: int) -> SymbolSpec:
    return {s.symbol_id: s for s in (EURUSD, XAUUSD, US30)}[symbol_id]


def a_volume(rng: random.Random, spec: SymbolSpec) -> int:
    return spec.min_volume + spec.step_volume * rng.randrange(0, 40)


def a_level(rng: random.Random, symbol_id: int, above: bool) -> float | None:
    if rng.random() < 0.3:
        return None
    spec = spec_of(symbol_id)
    offset = rng.randrange(1, 500) * 10.0 ** (-spec.digits) * 10
    price = BASE_PRICE[symbol_id] + (offset if above else -offset)
    return round(price, spec.digits)


def levels(rng: random.Random, symbol_id: int, side: Side) -> tuple[float | None, float | None]:
    """A stop on the losing side of the base price, a target on the winning side."""
    buy = side is Side.BUY
    return a_level(rng, symbol_id, not buy), a_level(rng, symbol_id, buy)


def a_master_position(rng: random.Random, position_id: int) -> Position:
    symbol_id = rng.choice(list(FOLLOWER_ID))
    side = rng.choice([Side.BUY, Side.SELL])
    sl, tp = levels(rng, symbol_id, side)
    opened = rng.choice([NOW_MS - 1_000, NOW_MS - 600_000, STARTED_MS - 3_600_000])
    return Position(
        position_id,
        symbol_id,
        side,
        a_volume(rng, spec_of(symbol_id)),
        BASE_PRICE[symbol_id],
        sl,
        tp,
        open_ms=opened,
    )


def a_master_order(rng: random.Random, order_id: int, open_ids: list[int]) -> PendingOrder:
    symbol_id = rng.choice(list(FOLLOWER_ID))
    side = rng.choice([Side.BUY, Side.SELL])
    kind = rng.choice([OrderKind.LIMIT] * 4 + [OrderKind.STOP] * 3 + [OrderKind.STOP_LIMIT])
    sl, tp = levels(rng, symbol_id, side)
    price = BASE_PRICE[symbol_id]
    fills_into = rng.choice([None, 500 + order_id, 500 + order_id, *open_ids[:1]])
    return PendingOrder(
        order_id,
        symbol_id,
        side,
        kind,
        a_volume(rng, spec_of(symbol_id)),
        limit_price=price if kind is OrderKind.LIMIT else None,
        stop_price=price if kind is not OrderKind.LIMIT else None,
        stop_loss=sl,
        take_profit=tp,
        expiration_ms=rng.choice([None, NOW_MS + 86_400_000]),
        position_id=fills_into,
        updated_ms=rng.choice([NOW_MS - 1_000, STARTED_MS - 1]),
    )


def follower_items(
    rng: random.Random, keys: list[str], ids: Any
) -> tuple[list[Position], list[PendingOrder]]:
    """Copies of some keys (and of keys the master no longer has), plus foreign items."""
    positions: list[Position] = []
    orders: list[PendingOrder] = []
    for key in keys:
        symbol_id = FOLLOWER_ID[rng.choice(list(FOLLOWER_ID))]
        spec = spec_of({v: k for k, v in FOLLOWER_ID.items()}[symbol_id])
        text = label(M, key)
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            side = rng.choice([Side.BUY, Side.SELL])
            sl, tp = levels(rng, spec.symbol_id, side)
            positions.append(
                Position(
                    next(ids),
                    symbol_id,
                    side,
                    a_volume(rng, spec),
                    1.0,
                    sl,
                    tp,
                    label=text,
                    open_ms=NOW_MS - rng.randrange(1, 10**6),
                )
            )
        if key.startswith("o") and rng.random() < 0.5:
            kind = rng.choice([OrderKind.LIMIT, OrderKind.STOP])
            orders.append(
                PendingOrder(
                    next(ids),
                    symbol_id,
                    rng.choice([Side.BUY, Side.SELL]),
                    kind,
                    a_volume(rng, spec),
                    limit_price=1.0,
                    stop_price=1.0,
                    label=text,
                )
            )
        if key.startswith("p") and rng.random() < 0.05:
            orders.append(
                PendingOrder(
                    next(ids), symbol_id, Side.BUY, OrderKind.MARKET, spec.min_volume, label=text
                )
            )
    for text in ["", "manual", label(999, "p1")]:
        if rng.random() < 0.3:
            positions.append(Position(next(ids), 11, Side.BUY, 100_000, 1.1, label=text))
    return positions, orders


def only_one_per_symbol(positions: list[Position]) -> list[Position]:
    seen: set[int] = set()
    kept = []
    for held in positions:
        if held.symbol_id not in seen:
            seen.add(held.symbol_id)
            kept.append(held)
    return kept


def a_link(rng: random.Random, key: str, master_state: Any) -> Link:
    status = rng.choice(list(LinkStatus))
    master_volume = rng.choice([10_000_000, 5_000_000, 300, 20])
    follower_volume = rng.choice([0, 100_000, 5_000_000, 200, 30])
    item = master_state.positions.get(int(key[1:])) if key[0] == "p" else None
    sl = item.stop_loss if item is not None and rng.random() < 0.5 else None
    origin = fill = None
    if key[0] == "p" and rng.random() < 0.3:
        origin = f"o{rng.randrange(1, 6)}"
    if key[0] == "o" and rng.random() < 0.3:
        fill = f"p{rng.randrange(1, 6)}"
    return Link(
        "main",
        M,
        F,
        key,
        status,
        master_volume,
        follower_volume,
        sl,
        None,
        origin,
        fill,
        rng.randrange(0, 5),
    )


def a_case(seed: int) -> tuple[Any, Any, Broker, dict[str, Link]]:
    rng = random.Random(seed)
    tgt = target(
        reverse=rng.random() < 0.3,
        copy_sl_tp=rng.random() < 0.8,
        copy_pending=rng.random() < 0.8,
        copy_existing=rng.random() < 0.3,
        mode=rng.choice(["on", "on", "on", "close_only", "frozen"]),
        sides=rng.choice(["both", "both", "buy", "sell"]),
        slippage_points=rng.choice([None, 20]),
        volume=rng.choice(VOLUME_RULES),
        liquidate=rng.random() < 0.1,
    )
    positions = [a_master_position(rng, pid) for pid in range(1, rng.randrange(1, 5))]
    open_ids = [p.position_id for p in positions]
    orders = [a_master_order(rng, oid, open_ids) for oid in range(1, rng.randrange(1, 4))]
    master_state = master(*positions, *orders)
    keys = [f"p{i}" for i in range(1, 6)] + [f"o{i}" for i in range(1, 5)] + ["p501", "p502"]
    ids = iter(range(10_000, 20_000))
    copies, copy_orders = follower_items(rng, rng.sample(keys, rng.randrange(0, 5)), ids)
    kind = rng.choice([AccountKind.HEDGED, AccountKind.NETTED])
    if kind is AccountKind.NETTED:
        copies = only_one_per_symbol(copies)
    follower_state = follower(*copies, *copy_orders, kind=kind)
    links = {key: a_link(rng, key, master_state) for key in rng.sample(keys, rng.randrange(0, 4))}
    return tgt, master_state, Broker(follower_state, first_id=30_000), links


@pytest.mark.parametrize("seed", range(300))
def test_one_round_of_plans_converges(seed: int) -> None:
    tgt, master_state, broker, links = a_case(seed)
    converge(tgt, master_state, broker, links)
    second = converge(tgt, master_state, broker, links)
    assert intents_of(second) == [], second
    third = plan_all(tgt, master_state, broker.state, links, NOW_MS, {}, no_rate)
    assert [p for p in third if p.link is not None or p.intents] == [], third


def test_the_generator_reaches_the_interesting_cases() -> None:
    """Guards the property against a generator that silently stopped producing work."""
    kinds: set[str] = set()
    for seed in range(300):
        tgt, master_state, broker, links = a_case(seed)
        for plan in plan_all(tgt, master_state, broker.state, links, NOW_MS, {}, no_rate):
            kinds |= {type(intent).__name__ for intent in plan.intents}
            if plan.link is not None:
                kinds.add(f"link:{plan.link.status.value}")
    expected = {
        "OpenPosition",
        "ClosePosition",
        "AmendPositionProtection",
        "PlacePendingOrder",
        "AmendPendingOrder",
        "CancelPendingOrder",
        *(f"link:{status.value}" for status in LinkStatus),
    }
    assert expected <= kinds, expected - kinds


def test_a_broker_refuses_what_the_real_one_would() -> None:
    broker = Broker(follower(), first_id=1)
    with pytest.raises(KeyError):
        broker.apply([dataclasses.replace(_cancel(), order_id=12345)])


def _cancel() -> Any:
    from cmamd.replication.intents import CancelPendingOrder

    return CancelPendingOrder(F, "o1", 1)


@pytest.mark.parametrize("seed", range(100))
def test_plan_all_with_its_label_index_plans_as_each_key_alone(seed: int) -> None:
    """plan_all looks the follower's items up by label once for every key; plan_key alone
    scans the follower: both must see the same copies."""
    tgt, master_state, broker, links = a_case(seed)
    origins = origins_for(master_state, links.values())
    for plan in plan_all(tgt, master_state, broker.state, links, NOW_MS, {}, no_rate):
        alone = plan_key(
            tgt, plan.key, master_state, broker.state, links.get(plan.key), NOW_MS, origins, no_rate
        )
        assert (alone.intents, alone.link) == (plan.intents, plan.link)
        if any(isinstance(i, OpenPosition | PlacePendingOrder) for i in plan.intents):
            break  # later keys of plan_all see this symbol busy (netting): not comparable

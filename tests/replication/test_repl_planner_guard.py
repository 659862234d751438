"""No input crashes the planner: absurd values are refused with a note, never raised on.

A crash would be caught by the replication worker, but the key would then not be planned
again until the master touched it; a refusal is planned again on the item's next change.
"""

from __future__ import annotations

import math
import random

import pytest

from cmamd.accounts.model import OrderKind, Side
from cmamd.replication.intents import (
    AmendPendingOrder,
    AmendPositionProtection,
    OpenPosition,
    PlacePendingOrder,
)
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.planner import keys_for, plan_all

from .repl_kit import (
    EURUSD,
    NOW_MS,
    F,
    M,
    copy_of,
    follower,
    master,
    no_rate,
    order,
    order_copy,
    plan,
    position,
    target,
)

FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, 1.1, 1.0999]
VOLUMES = [-(2**62), -1, 0, 1, 100_000, 2**62, 2**63 - 1]
IDS = [1, 0, -5, 2**63 - 1]
SEED = 8_2026


@pytest.mark.parametrize(
    "item",
    [
        position(1, 2**62),
        position(1, -1_000_000),
        position(1, 1_000_000, sl=math.nan),
        position(1, 1_000_000, tp=math.inf),
        position(1, 1_000_000, entry=math.nan),
    ],
)
def test_an_absurd_master_position_is_refused_with_a_note(item: object) -> None:
    result = plan(target(volume={"max_lots": 1000}), "p1", master(item), follower())  # type: ignore[arg-type]
    assert (result.intents, result.link) == ([], None)
    assert [note.event for note in result.notes] == ["copy not planned"]
    assert result.notes[0].reason.startswith("not planned")


def test_negative_ids_never_become_keys() -> None:
    m = master(position(-5, 1_000_000), order(-7, 100_000))
    assert keys_for(target(), m, follower(), {}) == []
    assert [note.reason for note in plan(target(), "p-5", m, follower()).notes] == [
        "not planned: 'p-5' is not a master item key"
    ]


def test_a_copy_with_absurd_values_is_not_planned_from() -> None:
    m = master(position(1, 1_000_000, sl=1.09))
    f = follower(copy_of("p1", 7, 1_000_000, sl=math.nan))
    link = Link("main", M, F, "p1", LinkStatus.OPEN, 1_000_000, 1_000_000, seq=1)
    result = plan(target(), "p1", m, f, link)
    assert result.intents == [] and "follower's copy" in result.notes[0].reason


def _random_state(rnd: random.Random) -> tuple[object, object, Link | None, str]:
    pid = rnd.choice(IDS)
    item_key_id = abs(pid) or 1
    items: list[object] = [
        position(
            pid,
            rnd.choice(VOLUMES),
            entry=rnd.choice(FLOATS),
            sl=rnd.choice([*FLOATS, None]),
            tp=rnd.choice([*FLOATS, None]),
            opened_ms=rnd.choice([NOW_MS, -1, 2**62]),
        ),
        order(
            rnd.choice(IDS),
            rnd.choice(VOLUMES),
            kind=rnd.choice([OrderKind.LIMIT, OrderKind.STOP]),
            price=rnd.choice(FLOATS),
            sl=rnd.choice([*FLOATS, None]),
            expiration_ms=rnd.choice([None, -1, 2**62]),
        ),
    ]
    copies = [
        copy_of(f"p{item_key_id}", 7, rnd.choice(VOLUMES), sl=rnd.choice([*FLOATS, None])),
        order_copy(f"o{item_key_id}", 8, rnd.choice(VOLUMES), price=rnd.choice(FLOATS)),
    ]
    link = rnd.choice(
        [None, Link("main", M, F, f"p{item_key_id}", LinkStatus.OPEN, 1_000_000, 1_000_000, seq=1)]
    )
    key = rnd.choice([f"p{pid}", f"o{pid}", f"p{item_key_id}"])
    return master(*items), follower(*copies), link, key  # type: ignore[arg-type]


def test_seeded_absurd_inputs_never_crash_the_planner_nor_yield_absurd_orders() -> None:
    rnd = random.Random(SEED)
    tgt = target(volume={"mode": "multiplier", "value": "1", "max_lots": 1000}, copy_existing=True)
    for _ in range(2000):
        m, f, link, key = _random_state(rnd)
        if link is not None and link.key != key:
            link = None
        result = plan(tgt, key, m, f, link)  # type: ignore[arg-type]
        plan_all(tgt, m, f, [link] if link else [], NOW_MS, {}, no_rate)  # type: ignore[arg-type]
        for intent in result.intents:
            volume = getattr(intent, "volume", None)
            if volume is not None:
                assert 0 < volume <= EURUSD.max_volume, intent
            if isinstance(intent, AmendPositionProtection | AmendPendingOrder | PlacePendingOrder):
                levels = [intent.stop_loss, intent.take_profit]
                levels += [getattr(intent, "price", None)]
                assert all(v is None or math.isfinite(v) for v in levels), intent
            if isinstance(intent, OpenPosition):
                assert intent.side in (Side.BUY, Side.SELL)

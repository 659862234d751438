"""Exactly-once across restarts, reconciles, stale events and interrupted requests.

Each test reproduces one way a settled decision used to be taken again (issue 7, A-F).
"""

from __future__ import annotations

from typing import Any

from cmamd.replication.labels import label
from cmamd.sim import SimServer

from .kit import eventually

RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]
ACCOUNTS = ["master", "follower-hedged"]
NEW_ORDER = 2106


def new_orders(sim: SimServer, account_id: int, since: int = 0) -> list[Any]:
    return [
        r
        for r in sim.record[since:]
        if r.name == "ProtoOANewOrderReq" and r.message.ctidTraderAccountId == account_id
    ]


async def test_a_copy_closed_or_cancelled_on_the_follower_stays_closed_across_restarts(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    follower = ids["follower-hedged"]
    config = make_config(ACCOUNTS, RULES)
    first = daemons(config)
    await first.start()
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 200_000)
    order = sim.place_pending_order(ids["master"], "EURUSD", "buy", "limit", 100_000, 1.0)
    await first.settle()
    (copy,) = sim.broker.positions(follower)
    (pending_copy,) = sim.broker.orders(follower)
    assert pending_copy.label == label(ids["master"], f"o{order}")
    sim.close_position(follower, copy.position_id)  # by hand
    sim.cancel_pending_order(follower, pending_copy.order_id)  # by hand
    await first.settle()
    assert await first.stop() == 0
    mark = len(sim.record)
    for _ in range(2):  # a clean restart, twice
        again = daemons(config)
        await again.start()
        await again.settle()
        assert await again.stop() == 0
    assert new_orders(sim, follower, since=mark) == [], "a settled copy was made again"
    assert sim.broker.positions(follower) == [] and sim.broker.orders(follower) == []
    assert {p.position_id for p in sim.broker.positions(ids["master"])} == {position}

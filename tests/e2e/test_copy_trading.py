"""A master trades from its own client; each follower must end with exactly what its rule
prescribes. Everything runs over real sockets against the simulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmamd.accounts.model import OrderKind, Side
from cmamd.demo.master import MasterTrader
from cmamd.replication.labels import label
from cmamd.sim import SimServer, snapshots

from .kit import InProcessDaemon, WorldClock, eventually, new_order_requests

FOLLOWERS = ["follower-hedged", "follower-suffix", "follower-netted"]
RULES = [
    {
        "name": "main",
        "source": "master",
        "destinations": [
            {"account": "follower-hedged", "volume": {"mode": "multiplier", "value": 2}},
            {
                "account": "follower-suffix",
                "volume": {"mode": "balance_ratio", "value": 1},  # 25k / 100k
                "symbols": {"add_suffix": ".m"},
            },
            {"account": "follower-netted", "reverse": True},
        ],
    }
]


def held(sim: SimServer, account_id: int) -> list[tuple[str, str, int, float | None, float | None]]:
    names = {s.symbol_id: s.name for s in _symbols(sim, account_id)}
    return sorted(
        (names[p.symbol_id], p.side.value, p.volume, p.stop_loss, p.take_profit)
        for p in sim.broker.positions(account_id)
    )


def _symbols(sim: SimServer, account_id: int) -> list[Any]:
    names = sim.describe()
    account = next(a for a in names["accounts"] if a["account_id"] == account_id)
    return [sim.broker.symbol_named(account_id, n) for n in account["symbols"]]


async def start(
    make_config: Callable[..., Path],
    daemons: Callable[..., InProcessDaemon],
    rules: list[dict[str, Any]] = RULES,
    accounts: list[str] | None = None,
) -> InProcessDaemon:
    daemon = daemons(make_config(accounts or ["master", *FOLLOWERS], rules))
    await daemon.start()
    return daemon


async def test_open_partial_close_sl_tp_and_close_reach_every_follower(
    sim: SimServer, ids: dict[str, int], master: MasterTrader, make_config: Any, daemons: Any
) -> None:
    daemon = await start(make_config, daemons)
    position = await master.market(
        "EURUSD", Side.BUY, "1.00", sl_distance=0.0050, tp_distance=0.0100
    )
    await daemon.settle()
    entry = next(p for p in sim.broker.positions(ids["master"])).entry_price
    hedged = held(sim, ids["follower-hedged"])
    assert [(s, side, v) for s, side, v, *_ in hedged] == [("EURUSD", "buy", 20_000_000)]
    assert held(sim, ids["follower-suffix"])[0][:3] == ("EURUSD.m", "buy", 2_500_000)
    netted = held(sim, ids["follower-netted"])
    assert netted[0][:3] == ("EURUSD", "sell", 10_000_000)
    # reversed: the follower's stop sits where the master's target is, and vice versa
    netted_sl, netted_tp = netted[0][3], netted[0][4]
    assert netted_sl is not None and netted_tp is not None
    assert netted_sl > netted_tp
    for account in FOLLOWERS:
        copies = sim.broker.positions(ids[account])
        assert [c.label for c in copies] == [label(ids["master"], f"p{position}")]

    await master.close(position, master.volume("EURUSD", "0.40"))
    await daemon.settle()
    assert held(sim, ids["follower-hedged"])[0][2] == 12_000_000
    assert held(sim, ids["follower-suffix"])[0][2] == 1_500_000
    assert held(sim, ids["follower-netted"])[0][2] == 6_000_000

    await master.amend_sl_tp(position, round(entry - 0.0030, 5), round(entry + 0.0150, 5))
    await daemon.settle()
    for account in ("follower-hedged", "follower-suffix"):
        ((_, _, _, sl, tp),) = held(sim, ids[account])
        assert (sl, tp) == (round(entry - 0.0030, 5), round(entry + 0.0150, 5))
    ((_, _, _, sl, tp),) = held(sim, ids["follower-netted"])
    assert (sl, tp) == (round(entry + 0.0150, 5), round(entry - 0.0030, 5))

    await master.close(position, master.volume("EURUSD", "0.60"))
    await daemon.settle()
    for account in FOLLOWERS:
        assert sim.broker.positions(ids[account]) == []
    running = daemon.daemon
    assert running is not None and running.replicator is not None and running.store is not None
    stats = running.replicator.stats
    assert (stats.rejected, stats.unknown) == (0, 0)
    # finished items leave memory (the store keeps them for the record)
    assert running.replicator.live_links == 0
    assert len(running.store.links(include_closed=True)) == 3


async def test_partial_close_remainder_below_minimum_closes_the_copy(
    sim: SimServer, ids: dict[str, int], master: MasterTrader, make_config: Any, daemons: Any
) -> None:
    rules = [
        {
            "name": "r",
            "source": "master",
            "destinations": [
                {"account": "follower-hedged", "volume": {"mode": "multiplier", "value": 0.1}}
            ],
        }
    ]
    daemon = await start(make_config, daemons, rules, ["master", "follower-hedged"])
    position = await master.market("XAUUSD", Side.BUY, "0.10")  # 10 oz -> copy 1 oz (minimum)
    await daemon.settle()
    assert held(sim, ids["follower-hedged"])[0][:3] == ("XAUUSD", "buy", 100)
    await master.close(position, master.volume("XAUUSD", "0.05"))  # copy would be 0.5 oz
    await daemon.settle()
    assert sim.broker.positions(ids["follower-hedged"]) == []


async def test_pending_orders_placed_amended_cancelled_expired_and_filled(
    sim: SimServer, ids: dict[str, int], master: MasterTrader, make_config: Any, daemons: Any
) -> None:
    daemon = await start(make_config, daemons)
    order = await master.pending("US500", Side.BUY, OrderKind.LIMIT, "1.0", 5150.00)
    await daemon.settle()
    for account, kind, side in (
        ("follower-hedged", snapshots.OrderKind.LIMIT, snapshots.Side.BUY),
        ("follower-suffix", snapshots.OrderKind.LIMIT, snapshots.Side.BUY),
        ("follower-netted", snapshots.OrderKind.STOP, snapshots.Side.SELL),
    ):
        (copy,) = sim.broker.orders(ids[account])
        assert (copy.kind, copy.side, copy.label) == (kind, side, label(ids["master"], f"o{order}"))
        assert (copy.limit_price or copy.stop_price) == 5150.00

    await master.amend_pending(order, OrderKind.LIMIT, master.volume("US500", "1.0"), 5160.00)
    await daemon.settle()
    for account in FOLLOWERS:
        (copy,) = sim.broker.orders(ids[account])
        assert (copy.limit_price or copy.stop_price) == 5160.00

    await master.cancel(order)
    await daemon.settle()
    for account in FOLLOWERS:
        assert sim.broker.orders(ids[account]) == []

    expiring = await master.pending(
        "EURUSD",
        Side.SELL,
        OrderKind.LIMIT,
        "0.5",
        1.09000,
        expiration_ms=int(time.time() * 1000) + 1500,
    )
    await daemon.settle()
    assert all(len(sim.broker.orders(ids[a])) == 1 for a in FOLLOWERS)
    await eventually(lambda: not sim.broker.orders(ids["master"]), 5, "master order expiry")
    # the followers' copies carry the same expiry; whichever goes first, none remains
    await eventually(
        lambda: all(not sim.broker.orders(ids[a]) for a in FOLLOWERS), 5, "copies gone"
    )
    assert expiring not in {o.order_id for o in sim.broker.orders(ids["master"])}

    filled = await master.pending("XAUUSD", Side.BUY, OrderKind.LIMIT, "0.20", 2340.00)
    await daemon.settle()
    fill = master.expect_fill(filled)
    sim.set_price("XAUUSD", 2339.50, 2339.80)
    sim.set_price("XAUUSD.m", 2339.50, 2339.80)
    position = await fill
    await daemon.settle()
    assert held(sim, ids["follower-hedged"])[0][:3] == ("XAUUSD", "buy", 4_000)
    assert held(sim, ids["follower-suffix"])[0][:3] == ("XAUUSD.m", "buy", 500)
    assert held(sim, ids["follower-netted"])[0][:3] == ("XAUUSD", "sell", 2_000)
    for account in FOLLOWERS:
        assert len(sim.broker.positions(ids[account])) == 1, "no second, market copy"
        assert sim.broker.orders(ids[account]) == []
    await master.close(position, master.volume("XAUUSD", "0.20"))
    await daemon.settle()
    for account in FOLLOWERS:
        assert sim.broker.positions(ids[account]) == []


async def test_netted_master_volume_changes_are_followed(
    sim: SimServer, ids: dict[str, int], netted_master: MasterTrader, make_config: Any, daemons: Any
) -> None:
    rules = [
        {
            "name": "net",
            "source": "master-netted",
            "destinations": [
                {"account": "follower-hedged"},
                {"account": "follower-netted", "volume": {"mode": "multiplier", "value": 0.5}},
            ],
        }
    ]
    daemon = await start(
        make_config, daemons, rules, ["master-netted", "follower-hedged", "follower-netted"]
    )
    position = await netted_master.market("GBPUSD", Side.BUY, "1.00")
    await daemon.settle()
    same = await netted_master.market("GBPUSD", Side.BUY, "0.50")  # adds to the one position
    assert same == position
    await daemon.settle()
    # a hedged follower grows by a second position carrying the same label
    hedged = sim.broker.positions(ids["follower-hedged"])
    assert sum(p.volume for p in hedged) == 15_000_000
    assert {p.label for p in hedged} == {label(ids["master-netted"], f"p{position}")}
    assert held(sim, ids["follower-netted"])[0][1:3] == ("buy", 7_500_000)
    await netted_master.market("GBPUSD", Side.SELL, "0.70")  # reduces it
    await daemon.settle()
    assert sum(p.volume for p in sim.broker.positions(ids["follower-hedged"])) == 8_000_000
    assert held(sim, ids["follower-netted"])[0][1:3] == ("buy", 4_000_000)
    await netted_master.market("GBPUSD", Side.SELL, "0.80")  # flat
    await daemon.settle()
    assert sim.broker.positions(ids["follower-hedged"]) == []
    assert sim.broker.positions(ids["follower-netted"]) == []


async def test_rejected_follower_order_is_logged_and_not_retried(
    sim: SimServer, ids: dict[str, int], master: MasterTrader, make_config: Any, daemons: Any
) -> None:
    rules = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]
    daemon = await start(make_config, daemons, rules, ["master", "follower-hedged"])
    sim.reject_next_orders(1, "NOT_ENOUGH_MONEY", account_id=ids["follower-hedged"])
    first = await master.market("EURUSD", Side.BUY, "0.10")
    await daemon.settle()
    assert sim.broker.positions(ids["follower-hedged"]) == []
    second = await master.market("EURUSD", Side.BUY, "0.20")
    await daemon.settle()
    assert held(sim, ids["follower-hedged"]) == [("EURUSD", "buy", 2_000_000, None, None)]
    sent = new_order_requests(sim, ids["follower-hedged"])
    assert len(sent) == 2, "the rejected copy is not sent again"
    assert daemon.daemon is not None and daemon.daemon.store is not None
    store = daemon.daemon.store
    journal = store.journal(ids["follower-hedged"])
    assert [(e.key, e.outcome, e.detail) for e in journal if e.outcome == "rejected"] == [
        (f"p{first}", "rejected", "NOT_ENOUGH_MONEY")
    ]
    await master.close(first, master.volume("EURUSD", "0.10"))
    await master.close(second, master.volume("EURUSD", "0.20"))
    await daemon.settle()
    assert sim.broker.positions(ids["follower-hedged"]) == []


async def test_filters_skip_once_and_unmapped_symbols_are_never_guessed(
    sim: SimServer, ids: dict[str, int], master: MasterTrader, make_config: Any, daemons: Any
) -> None:
    rules = [
        {
            "name": "r",
            "source": "master",
            "destinations": [
                {
                    "account": "follower-suffix",
                    "symbols": {"map": {"XAUUSD": "XAUUSD.m"}},
                },  # no suffix rule
                {"account": "follower-hedged", "sides": "sell", "symbols": {"exclude": ["US500"]}},
            ],
        }
    ]
    daemon = await start(
        make_config, daemons, rules, ["master", "follower-suffix", "follower-hedged"]
    )
    await master.market("EURUSD", Side.BUY, "0.10")  # unmapped on suffix; wrong side on hedged
    await master.market("XAUUSD", Side.SELL, "0.10")  # mapped; a sell
    await master.market("US500", Side.SELL, "1.0")  # unmapped on suffix; excluded on hedged
    await daemon.settle()
    assert [h[:3] for h in held(sim, ids["follower-suffix"])] == [("XAUUSD.m", "sell", 1_000)]
    assert [h[:3] for h in held(sim, ids["follower-hedged"])] == [("XAUUSD", "sell", 1_000)]
    assert daemon.daemon is not None and daemon.daemon.store is not None
    skipped = [
        link
        for link in daemon.daemon.store.links(include_closed=True)
        if link["status"] == "skipped"
    ]
    assert len(skipped) == 4
    assert any("EURUSD" in link["reason"] for link in skipped)


async def test_daemon_start_reconciles_what_happened_while_it_was_away(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: Any,
    daemons: Any,
    world_clock: WorldClock,
) -> None:
    rules = [
        {
            "name": "r",
            "source": "master",
            "destinations": [{"account": "follower-hedged", "max_delay_s": 1}],
        }
    ]
    config = make_config(["master", "follower-hedged"], rules)
    first = daemons(config)
    await first.start()
    kept = await master.market("EURUSD", Side.BUY, "0.10")
    closed = await master.market("GBPUSD", Side.BUY, "0.10")
    await first.settle()
    assert len(sim.broker.positions(ids["follower-hedged"])) == 2
    assert await first.stop() == 0

    await master.close(closed, master.volume("GBPUSD", "0.10"))  # closed while away
    await master.close(kept, master.volume("EURUSD", "0.04"))  # reduced while away
    stale = await master.market("USDJPY", Side.SELL, "0.10")  # opened while away...
    world_clock.advance(1.2)  # ...and now too old to copy
    second = daemons(config)
    await second.start()
    await second.settle()
    assert held(sim, ids["follower-hedged"]) == [("EURUSD", "buy", 600_000, None, None)]
    links = {link["key"]: link for link in second.daemon.store.links(include_closed=True)}
    assert links[f"p{stale}"]["status"] == "skipped"

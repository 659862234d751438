"""Per-destination copy settings end to end: modes, copy_existing, SL/TP, sides, sizing and
the equity stop. The daemon runs in-process against the simulator; the master trades from
its own client, and each test has a control destination or a recorded decision so that
"nothing was copied" cannot pass merely because the daemon saw nothing."""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any

from cmamd.accounts.model import OrderKind, Side
from cmamd.demo.master import MasterTrader
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication.labels import label
from cmamd.sim import SimServer

from .kit import FAST_LOOP, Daemons, InProcessDaemon, MakeConfig, WorldClock, eventually, started


def rules(
    *destinations: dict[str, Any], name: str = "main", source: str = "master"
) -> list[dict[str, Any]]:
    return [{"name": name, "source": source, "destinations": list(destinations)}]


def held(sim: SimServer, account_id: int) -> list[tuple[int, str, int, float | None, float | None]]:
    """(symbol id, side, volume, SL, TP) of every open position, sorted."""
    return sorted(
        (p.symbol_id, p.side.value, p.volume, p.stop_loss, p.take_profit)
        for p in sim.broker.positions(account_id)
    )


def copies_of(sim: SimServer, follower: int, master: int, key: str) -> list[Any]:
    return [p for p in sim.broker.positions(follower) if p.label == label(master, key)]


def link(daemon: InProcessDaemon, follower: int, key: str) -> dict[str, Any]:
    assert daemon.daemon is not None and daemon.daemon.store is not None
    found = [
        record
        for record in daemon.daemon.store.links(follower_id=follower, include_closed=True)
        if record["key"] == key
    ]
    assert len(found) == 1, f"one link for {key} on {follower}, got {found}"
    return found[0]


def symbol_id(sim: SimServer, account_id: int, name: str) -> int:
    return sim.broker.symbol_named(account_id, name).symbol_id


# modes ---------------------------------------------------------------------------------
async def test_close_only_follows_closes_and_reductions_but_opens_nothing(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    accounts = ["master", "follower-hedged", "follower-netted"]
    hedged, netted = ids["follower-hedged"], ids["follower-netted"]
    on = make_config(
        accounts, rules({"account": "follower-hedged"}, {"account": "follower-netted"})
    )
    first = await started(daemons, on)
    old = await master.market("EURUSD", Side.BUY, "1.00")
    await first.settle()
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{old}")] == [10_000_000]
    assert await first.stop() == 0

    close_only = make_config(
        accounts,
        rules({"account": "follower-hedged", "mode": "close_only"}, {"account": "follower-netted"}),
        name="close_only.yaml",
    )
    second = await started(daemons, close_only)
    new = await master.market("GBPUSD", Side.SELL, "0.50")
    await second.settle()
    assert copies_of(sim, hedged, ids["master"], f"p{new}") == []
    assert link(second, hedged, f"p{new}")["status"] == "skipped"
    assert "close_only" in link(second, hedged, f"p{new}")["reason"]
    assert len(copies_of(sim, netted, ids["master"], f"p{new}")) == 1, (
        "the control destination copies it"
    )

    await master.close(old, master.volume("EURUSD", "0.40"))  # a reduction is followed
    await second.settle()
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{old}")] == [6_000_000]

    entry = next(p for p in sim.broker.positions(ids["master"]) if p.position_id == old).entry_price
    sl, tp = round(entry - 0.0040, 5), round(entry + 0.0080, 5)
    await master.amend_sl_tp(old, sl, tp)  # protection is followed
    await second.settle()
    (copy,) = copies_of(sim, hedged, ids["master"], f"p{old}")
    assert (copy.stop_loss, copy.take_profit) == (sl, tp)

    await master.close(old, master.volume("EURUSD", "0.60"))  # the close is followed
    await second.settle()
    assert sim.broker.positions(hedged) == []


async def test_frozen_does_nothing_at_all(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    accounts = ["master", "follower-hedged", "follower-netted"]
    hedged, netted = ids["follower-hedged"], ids["follower-netted"]
    on = make_config(
        accounts, rules({"account": "follower-hedged"}, {"account": "follower-netted"})
    )
    first = await started(daemons, on)
    old = await master.market("EURUSD", Side.BUY, "1.00")
    await first.settle()
    before = held(sim, hedged)
    assert [v for _, _, v, _, _ in before] == [10_000_000]
    assert await first.stop() == 0

    frozen = make_config(
        accounts,
        rules({"account": "follower-hedged", "mode": "frozen"}, {"account": "follower-netted"}),
        name="frozen.yaml",
    )
    second = await started(daemons, frozen)
    since = len(sim.record)
    new = await master.market("GBPUSD", Side.BUY, "0.30")
    await master.close(old, master.volume("EURUSD", "0.50"))
    await second.settle()
    # the control destination follows both; the frozen one neither
    assert len(copies_of(sim, netted, ids["master"], f"p{new}")) == 1
    assert [p.volume for p in copies_of(sim, netted, ids["master"], f"p{old}")] == [5_000_000]
    assert held(sim, hedged) == before
    await master.close(old, master.volume("EURUSD", "0.50"))
    await second.settle()
    assert copies_of(sim, netted, ids["master"], f"p{old}") == []
    assert held(sim, hedged) == before, "not even the master's close is followed"
    trading = (pb.ProtoOANewOrderReq, pb.ProtoOAClosePositionReq, pb.ProtoOAAmendPositionSLTPReq)
    assert [
        r.name
        for r in sim.record[since:]
        if isinstance(r.message, trading) and r.message.ctidTraderAccountId == hedged
    ] == []


# copy_existing -------------------------------------------------------------------------
async def test_copy_existing_copies_a_position_older_than_the_first_start(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    world_clock: WorldClock,
) -> None:
    hedged, netted = ids["follower-hedged"], ids["follower-netted"]
    config = make_config(
        ["master", "follower-hedged", "follower-netted"],
        rules(
            {"account": "follower-hedged", "copy_existing": True, "max_delay_s": 1},
            {"account": "follower-netted", "max_delay_s": 1},
        ),
    )
    existing = await master.market("EURUSD", Side.BUY, "0.20")
    world_clock.advance(1.2)  # older than max_delay_s by the time the daemon first starts
    daemon = await started(daemons, config)
    await daemon.settle()
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{existing}")] == [2_000_000]
    assert copies_of(sim, netted, ids["master"], f"p{existing}") == []
    skipped = link(daemon, netted, f"p{existing}")
    assert skipped["status"] == "skipped" and "copy_existing is off" in skipped["reason"]

    fresh = await master.market("GBPUSD", Side.SELL, "0.10")  # made after the start: both copy it
    await daemon.settle()
    assert len(copies_of(sim, hedged, ids["master"], f"p{fresh}")) == 1
    assert len(copies_of(sim, netted, ids["master"], f"p{fresh}")) == 1


# per-destination filters and levels --------------------------------------------------------
async def test_copy_sl_tp_false_copies_positions_without_their_levels(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    hedged, netted = ids["follower-hedged"], ids["follower-netted"]
    daemon = await started(
        daemons,
        make_config(
            ["master", "follower-hedged", "follower-netted"],
            rules(
                {"account": "follower-hedged", "copy_sl_tp": False}, {"account": "follower-netted"}
            ),
        ),
    )
    position = await master.market(
        "EURUSD", Side.BUY, "0.50", sl_distance=0.0050, tp_distance=0.0100
    )
    await daemon.settle()
    (plain,) = copies_of(sim, hedged, ids["master"], f"p{position}")
    assert (plain.volume, plain.stop_loss, plain.take_profit) == (5_000_000, None, None)
    (control,) = copies_of(sim, netted, ids["master"], f"p{position}")
    assert control.stop_loss is not None and control.take_profit is not None

    entry = next(
        p for p in sim.broker.positions(ids["master"]) if p.position_id == position
    ).entry_price
    await master.amend_sl_tp(position, round(entry - 0.0030, 5), round(entry + 0.0150, 5))
    await daemon.settle()
    (control,) = copies_of(sim, netted, ids["master"], f"p{position}")
    assert control.take_profit == round(entry + 0.0150, 5), "the control follows the amendment"
    (plain,) = copies_of(sim, hedged, ids["master"], f"p{position}")
    assert (plain.stop_loss, plain.take_profit) == (None, None)

    await master.close(position, master.volume("EURUSD", "0.50"))
    await daemon.settle()
    assert sim.broker.positions(hedged) == []


async def test_sides_buy_copies_only_buys(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    hedged = ids["follower-hedged"]
    daemon = await started(
        daemons,
        make_config(
            ["master", "follower-hedged"], rules({"account": "follower-hedged", "sides": "buy"})
        ),
    )
    buy = await master.market("EURUSD", Side.BUY, "0.10")
    sell = await master.market("GBPUSD", Side.SELL, "0.10")
    await daemon.settle()
    assert held(sim, hedged) == [(symbol_id(sim, hedged, "EURUSD"), "buy", 1_000_000, None, None)]
    assert link(daemon, hedged, f"p{buy}")["status"] == "open"
    assert link(daemon, hedged, f"p{sell}")["status"] == "skipped"
    await master.close(buy, master.volume("EURUSD", "0.10"))
    await master.close(sell, master.volume("GBPUSD", "0.10"))
    await daemon.settle()
    assert sim.broker.positions(hedged) == []


# sizing --------------------------------------------------------------------------------
async def test_fixed_lots_ignores_the_master_volume(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    hedged = ids["follower-hedged"]
    daemon = await started(
        daemons,
        make_config(
            ["master", "follower-hedged"],
            rules({"account": "follower-hedged", "volume": {"mode": "fixed_lots", "value": 0.3}}),
        ),
    )
    big = await master.market("EURUSD", Side.BUY, "2.00")
    small = await master.market("XAUUSD", Side.SELL, "0.05")  # 5 oz; the copy is 0.3 lot = 30 oz
    await daemon.settle()
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{big}")] == [3_000_000]
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{small}")] == [3_000]
    await master.close(big, master.volume("EURUSD", "1.00"))  # halved: the copy is halved
    await daemon.settle()
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{big}")] == [1_500_000]


async def test_risk_percent_sizes_by_the_stop_distance_and_follower_equity(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    hedged = ids["follower-hedged"]
    percent = Decimal("1.3")
    daemon = await started(
        daemons,
        make_config(
            ["master", "follower-hedged"],
            rules(
                {
                    "account": "follower-hedged",
                    "volume": {"mode": "risk_percent", "value": str(percent)},
                }
            ),
        ),
    )
    equity = sim.broker.trader(hedged).balance + sim.broker.unrealized_pnl(hedged)
    position = await master.market("EURUSD", Side.BUY, "1.00", sl_distance=0.0037)
    await daemon.settle()

    theirs = next(p for p in sim.broker.positions(ids["master"]) if p.position_id == position)
    assert theirs.stop_loss is not None
    spec = sim.broker.symbol_named(hedged, "EURUSD")
    distance = abs(Decimal(repr(theirs.entry_price)) - Decimal(repr(theirs.stop_loss)))
    loss_per_lot = Decimal(spec.lot_size) / 100 * distance  # USD account, USD quote: rate 1
    lots = Decimal(equity) * percent / 100 / loss_per_lot
    expected = int(lots * spec.lot_size // spec.step_volume) * spec.step_volume
    # 50,000 USD x 1.3% / (370 USD lost per lot at the stop) = 1.7567... lots -> 1.75 lots
    assert (equity, distance, expected) == (Decimal(50_000), Decimal("0.0037"), 17_500_000)
    assert lots * spec.lot_size != expected, "the numbers exercise the rounding down"
    (copy,) = copies_of(sim, hedged, ids["master"], f"p{position}")
    assert copy.volume == expected
    assert copy.stop_loss == theirs.stop_loss


async def test_risk_percent_skips_a_trade_without_stop_loss(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    hedged = ids["follower-hedged"]
    daemon = await started(
        daemons,
        make_config(
            ["master", "follower-hedged"],
            rules({"account": "follower-hedged", "volume": {"mode": "risk_percent", "value": 1}}),
        ),
    )
    naked = await master.market("EURUSD", Side.BUY, "1.00")
    protected = await master.market("GBPUSD", Side.BUY, "1.00", sl_distance=0.0050)
    await daemon.settle()
    assert copies_of(sim, hedged, ids["master"], f"p{naked}") == []
    skipped = link(daemon, hedged, f"p{naked}")
    assert skipped["status"] == "skipped" and "stop loss" in skipped["reason"]
    assert len(copies_of(sim, hedged, ids["master"], f"p{protected}")) == 1


# equity stop ---------------------------------------------------------------------------
async def test_equity_stop_closes_the_copies_freezes_the_destination_and_survives_a_restart(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    daemons = functools.partial(daemons, timing=FAST_LOOP)
    hedged, netted = ids["follower-hedged"], ids["follower-netted"]
    config = make_config(
        ["master", "follower-hedged", "follower-netted"],
        rules(
            {
                "account": "follower-hedged",
                "volume": {"mode": "multiplier", "value": 2},
                "equity_stop": {"below": 45_000},
            },
            {"account": "follower-netted"},
        ),
    )
    daemon = await started(daemons, config)
    position = await master.market("EURUSD", Side.BUY, "1.00")
    await daemon.settle()
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{position}")] == [20_000_000]
    assert daemon.daemon is not None
    assert "EQUITY STOP" not in daemon.daemon.status_line()

    # EURUSD falls 500 pips: 2 lots lose 10,000 USD, taking 50,000 below the 45,000 stop
    sim.set_price("EURUSD", 1.03000, 1.03010)
    await eventually(
        lambda: sim.broker.positions(hedged) == [], 10, "copies closed by the equity stop"
    )
    await daemon.settle()
    assert "EQUITY STOP: main:follower-hedged" in daemon.daemon.status_line()
    assert daemon.task is not None and not daemon.task.done(), "the daemon keeps running"
    assert len(copies_of(sim, netted, ids["master"], f"p{position}")) == 1, (
        "other destinations untouched"
    )

    later = await master.market("GBPUSD", Side.BUY, "0.10")
    await daemon.settle()
    assert sim.broker.positions(hedged) == []
    assert link(daemon, hedged, f"p{later}")["status"] == "skipped"
    assert len(copies_of(sim, netted, ids["master"], f"p{later}")) == 1
    assert await daemon.stop() == 0

    # back above the threshold: the stop holds anyway, across a restart, until the rule changes
    sim.deposit(hedged, 30_000)
    assert sim.broker.trader(hedged).balance + sim.broker.unrealized_pnl(hedged) > 45_000
    again = await started(daemons, config)
    await again.settle()
    assert again.daemon is not None
    assert "EQUITY STOP: main:follower-hedged" in again.daemon.status_line()
    after_restart = await master.market("USDJPY", Side.SELL, "0.10")
    await again.settle()
    assert sim.broker.positions(hedged) == []
    assert link(again, hedged, f"p{after_restart}")["status"] == "skipped"
    assert len(copies_of(sim, netted, ids["master"], f"p{after_restart}")) == 1


async def test_risk_percent_converts_a_jpy_stop_into_the_usd_deposit(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    hedged = ids["follower-hedged"]
    daemon = await started(
        daemons,
        make_config(
            ["master", "follower-hedged"],
            rules({"account": "follower-hedged", "volume": {"mode": "risk_percent", "value": 1}}),
        ),
    )
    assert daemon.daemon is not None
    session = daemon.daemon.sessions["follower-hedged"]
    await eventually(lambda: session.quotes != {}, 5, "USDJPY quote")
    position = await master.market("USDJPY", Side.SELL, "1.00", sl_distance=0.500)
    await daemon.settle()
    theirs = next(p for p in sim.broker.positions(ids["master"]) if p.position_id == position)
    assert theirs.stop_loss is not None
    spec = sim.broker.symbol_named(hedged, "USDJPY")
    usdjpy = (Decimal("150.000") + Decimal("150.012")) / 2  # the follower's quote, mid
    distance = abs(Decimal(repr(theirs.stop_loss)) - Decimal(repr(theirs.entry_price)))
    loss_per_lot = Decimal(spec.lot_size) / 100 * distance / usdjpy  # JPY -> USD
    lots = Decimal(50_000) / 100 / loss_per_lot
    expected = int(lots * spec.lot_size // spec.step_volume) * spec.step_volume
    # 500 USD at risk / (100,000 x 0.5 JPY / 150.006 = 333.31 USD per lot) = 1.50 lots
    assert expected == 15_000_000
    (copy,) = copies_of(sim, hedged, ids["master"], f"p{position}")
    assert copy.volume == expected


async def test_a_symbol_changed_by_the_broker_is_reloaded_before_the_next_copy(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    suffix = ids["follower-suffix"]
    daemon = await started(
        daemons,
        make_config(
            ["master", "follower-suffix"],
            rules({"account": "follower-suffix", "symbols": {"add_suffix": ".m"}}),
        ),
    )
    assert daemon.daemon is not None
    session = daemon.daemon.sessions["follower-suffix"]
    spec = session.symbol("XAUUSD.m")
    assert spec is not None and not spec.close_only
    sim.set_trading_mode("XAUUSD.m", "close_only", broker="Suffix Markets")

    def reloaded_close_only() -> bool:
        reloaded = session.symbol("XAUUSD.m")
        return reloaded is not None and reloaded.close_only

    await eventually(reloaded_close_only, 5, "spec reloaded")
    gold = await master.market("XAUUSD", Side.BUY, "0.10")
    euro = await master.market("EURUSD", Side.BUY, "0.10")
    await daemon.settle()
    assert copies_of(sim, suffix, ids["master"], f"p{gold}") == []
    assert "close-only" in link(daemon, suffix, f"p{gold}")["reason"]
    assert len(copies_of(sim, suffix, ids["master"], f"p{euro}")) == 1


# frozen, then back on --------------------------------------------------------------------
async def test_frozen_ignores_what_the_master_opened_meanwhile_and_catches_up_on_return(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    """Back from frozen: the copies made before follow the master again (here a partial
    close made meanwhile); what the master opened or placed meanwhile counts as existing,
    copied only where copy_existing is on (the netted follower here)."""
    accounts = ["master", "follower-hedged", "follower-netted"]
    hedged, netted = ids["follower-hedged"], ids["follower-netted"]

    def config(mode: str) -> Path:
        return make_config(
            accounts,
            rules(
                {"account": "follower-hedged", "mode": mode},
                {"account": "follower-netted", "mode": mode, "copy_existing": True},
            ),
            name=f"{mode}.yaml",
        )

    first = await started(daemons, config("on"))
    before = await master.market("EURUSD", Side.BUY, "1.00")
    await first.settle()
    for follower in (hedged, netted):
        assert [p.volume for p in copies_of(sim, follower, ids["master"], f"p{before}")] == [
            10_000_000
        ]
    assert await first.stop() == 0

    frozen = await started(daemons, config("frozen"))
    meanwhile = await master.market("GBPUSD", Side.SELL, "0.30")
    order = await master.pending("USDJPY", Side.BUY, OrderKind.LIMIT, "0.20", 140.000)
    await master.close(before, master.volume("EURUSD", "0.40"))
    await frozen.settle()
    assert [p.volume for p in sim.broker.positions(hedged)] == [10_000_000], "frozen: untouched"
    assert await frozen.stop() == 0

    back = await started(daemons, config("on"))
    await back.settle()
    for follower in (hedged, netted):
        assert [p.volume for p in copies_of(sim, follower, ids["master"], f"p{before}")] == [
            6_000_000
        ], "the partial close made while frozen is followed on return"
    assert copies_of(sim, hedged, ids["master"], f"p{meanwhile}") == []
    assert sim.broker.orders(hedged) == []
    for key in (f"p{meanwhile}", f"o{order}"):
        skipped = link(back, hedged, key)
        assert skipped["status"] == "skipped" and "copy_existing is off" in skipped["reason"]
    # copy_existing: what the master holds when copying resumes is copied
    assert [p.volume for p in copies_of(sim, netted, ids["master"], f"p{meanwhile}")] == [3_000_000]
    assert [o.label for o in sim.broker.orders(netted)] == [label(ids["master"], f"o{order}")]

    fresh = await master.market("XAUUSD", Side.BUY, "0.10")  # after the return: copied
    await back.settle()
    assert len(copies_of(sim, hedged, ids["master"], f"p{fresh}")) == 1


# equity stop: recovery and re-arming ---------------------------------------------------------
async def test_equity_stop_holds_when_equity_recovers_and_only_its_own_block_rearms_it(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    daemons = functools.partial(daemons, timing=FAST_LOOP)
    hedged = ids["follower-hedged"]

    def config(name: str, **extra: Any) -> Path:
        destination = {
            "account": "follower-hedged",
            "volume": {"mode": "multiplier", "value": 2},
            "equity_stop": {"below": 45_000},
            **extra,
        }
        return make_config(["master", "follower-hedged"], rules(destination), name=name)

    daemon = await started(daemons, config("armed.yaml"))
    position = await master.market("EURUSD", Side.BUY, "1.00")
    await daemon.settle()
    sim.set_price("EURUSD", 1.03000, 1.03010)  # 2 lots lose 10,000 USD: below 45,000
    await eventually(lambda: sim.broker.positions(hedged) == [], 10, "equity stop tripped")
    await daemon.settle()
    sim.deposit(hedged, 30_000)  # equity recovers well above the threshold
    assert sim.broker.trader(hedged).balance > 45_000
    later = await master.market("GBPUSD", Side.BUY, "0.10")
    await daemon.settle()
    assert sim.broker.positions(hedged) == [], "recovered equity does not re-arm the stop"
    assert daemon.daemon is not None
    assert "EQUITY STOP: main:follower-hedged" in daemon.daemon.status_line()
    assert await daemon.stop() == 0

    # another key of the destination changes: the stop still holds
    edited = await started(daemons, config("edited.yaml", copy_sl_tp=False, max_delay_s=30))
    other = await master.market("USDJPY", Side.SELL, "0.10")
    await edited.settle()
    assert sim.broker.positions(hedged) == []
    assert link(edited, hedged, f"p{other}")["status"] == "skipped"
    assert await edited.stop() == 0

    # the equity_stop block changes (its rearm marker): re-armed, new trades are copied
    rearmed_config = config("rearmed.yaml", equity_stop={"below": 45_000, "rearm": 1})
    rearmed = await started(daemons, rearmed_config)
    await rearmed.settle()
    assert rearmed.daemon is not None
    assert "EQUITY STOP" not in rearmed.daemon.status_line()
    fresh = await master.market("XAUUSD", Side.BUY, "0.10")
    await rearmed.settle()
    assert [p.volume for p in copies_of(sim, hedged, ids["master"], f"p{fresh}")] == [2_000]
    # what the stop closed or skipped is not reopened
    for key in (f"p{position}", f"p{later}", f"p{other}"):
        assert copies_of(sim, hedged, ids["master"], key) == []

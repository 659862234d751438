"""How the planner uses account figures, symbol states and limits around a decision."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from cmamd.accounts.model import AccountState, Side, SymbolSpec
from cmamd.replication.intents import OpenPosition
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.planner import plan_key

from .repl_kit import (
    F_EURUSD,
    FX_LOT,
    NOW_MS,
    F,
    copy_of,
    follower,
    master,
    plan,
    position,
    target,
)

LOT = FX_LOT


def grown_link(follower_volume: int) -> Link:
    return Link("main", 1001, F, "p1", LinkStatus.OPEN, LOT, follower_volume, seq=1)


def test_nothing_is_decided_before_the_accounts_are_loaded() -> None:
    m = master(position(1, LOT))
    empty = AccountState(account_id=F)  # trader and symbols not received yet
    result = plan(target(), "p1", m, empty)
    assert (result.intents, result.link) == ([], None)
    assert any("not loaded" in note.reason for note in result.notes)
    assert {note.event for note in result.notes} == {"copy waiting"}
    unknown_symbol = master(position(1, LOT, symbol_id=99))
    result = plan(target(), "p1", unknown_symbol, follower())
    assert (result.intents, result.link) == ([], None)  # decided later, not skipped for ever


def test_risk_percent_sizes_on_the_copy_s_own_stop() -> None:
    rates: dict[str, Decimal] = {"EURUSD.m": Decimal(1)}

    def rate(spec: SymbolSpec) -> Decimal | None:
        return rates.get(spec.name)

    m = master(position(1, LOT, entry=1.1, sl=1.095, tp=1.11))
    f = follower(balance="4000")  # 1% = 40; 500 per lot at a 0.0050 stop -> 0.08 lots
    risk = {"mode": "risk_percent", "value": "1"}
    (intent,) = plan_key(target(volume=risk), "p1", m, f, None, NOW_MS, {}, rate).intents
    assert isinstance(intent, OpenPosition) and intent.volume == 800_000
    # reversed, the copy's stop is the master's target, 0.0100 away -> 0.04 lots
    reverse = target(volume=risk, reverse=True)
    (intent,) = plan_key(reverse, "p1", m, f, None, NOW_MS, {}, rate).intents
    assert isinstance(intent, OpenPosition) and intent.volume == 400_000
    rates.clear()
    skipped = plan_key(target(volume=risk), "p1", m, f, None, NOW_MS, {}, rate).link
    assert skipped is not None and "rate" in skipped.reason


def test_balance_ratio_reads_both_accounts() -> None:
    m = master(position(1, LOT), balance="20000")
    (intent,) = plan(target(volume={"mode": "balance_ratio"}), "p1", m, follower()).intents
    assert isinstance(intent, OpenPosition) and intent.volume == LOT // 2


def test_an_increase_stops_at_the_rule_and_symbol_maximum() -> None:
    tgt = target(volume={"value": "1", "max_lots": "2"})
    f = follower(copy_of("p1", 50, LOT))
    result = plan(tgt, "p1", master(position(1, 5 * LOT)), f, grown_link(LOT))
    (intent,) = result.intents
    assert isinstance(intent, OpenPosition) and intent.volume == LOT  # up to 2 lots in all
    assert intent.relative_stop_loss is None and intent.slippage_points is None


def test_no_increase_on_a_symbol_the_broker_made_close_only() -> None:
    f = follower(copy_of("p1", 50, LOT))
    f.symbols_by_id[F_EURUSD.symbol_id] = dataclasses.replace(F_EURUSD, close_only=True)
    result = plan(target(), "p1", master(position(1, 2 * LOT)), f, grown_link(LOT))
    assert result.intents == [] and any("close-only" in note.reason for note in result.notes)


def test_an_increase_keeps_the_copy_s_side_and_label() -> None:
    tgt = target(reverse=True)
    f = follower(copy_of("p1", 50, LOT, side=Side.SELL))
    mirrored = dataclasses.replace(grown_link(LOT), master_sl=1.09)
    result = plan(tgt, "p1", master(position(1, 2 * LOT, sl=1.09)), f, mirrored)
    (intent,) = result.intents
    assert isinstance(intent, OpenPosition)
    assert (intent.side, intent.label, intent.volume) == (Side.SELL, "cm:1001:p1", LOT)
    assert intent.client_order_id == "cm2-1001-p1"
    # reversed: the master's stop 0.0100 below its entry is the copy's target
    assert (intent.relative_stop_loss, intent.relative_take_profit) == (None, 1000)

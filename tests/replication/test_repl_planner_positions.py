"""Planner scenarios for master positions (keys ``p<P>``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from cmamd.accounts.model import AccountKind, OrderKind, Side
from cmamd.replication.intents import (
    AmendPositionProtection,
    ClosePosition,
    KeyPlan,
    OpenPosition,
)
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.planner import plan_key

from .repl_kit import (
    F_EURUSD,
    F_GOLD,
    FX_LOT,
    NOW_MS,
    STARTED_MS,
    XAUUSD,
    Broker,
    F,
    M,
    converge,
    copy_of,
    follower,
    intents_of,
    master,
    no_rate,
    order_copy,
    plan,
    position,
    target,
)

LOT = FX_LOT


def open_link(**changes: Any) -> Link:
    fields: dict[str, Any] = {
        "rule": "main",
        "master_account_id": 1001,
        "follower_account_id": F,
        "key": "p1",
        "status": LinkStatus.OPEN,
        "master_volume": LOT,
        "follower_volume": LOT // 2,
        "master_sl": None,
        "master_tp": None,
        "seq": 1,
    }
    fields.update(changes)
    return Link(**fields)


def replan_is_quiet(
    tgt: Any, key: str, master_state: Any, broker: Broker, first: KeyPlan, **kw: Any
) -> Link | None:
    """Execute ``first`` on the broker, plan again: no intents. Returns the link then."""
    broker.apply(first.intents)
    link = first.link
    again = plan(tgt, key, master_state, broker.state, link, **kw)
    assert again.intents == [], again
    link = again.link or link
    assert plan(tgt, key, master_state, broker.state, link, **kw).link is None  # settled
    return link


def test_a_new_master_position_is_opened_with_relative_protection() -> None:
    tgt = target(volume={"value": "0.5"})
    m = master(position(1, LOT, sl=1.095, tp=1.11, entry=1.1))
    result = plan(tgt, "p1", m, follower())
    assert result.intents == [
        OpenPosition(
            follower_account_id=F,
            key="p1",
            symbol_id=F_EURUSD.symbol_id,
            side=Side.BUY,
            volume=LOT // 2,
            relative_stop_loss=500,  # 0.00500 in 1/100000
            relative_take_profit=1000,
            label="cm:1001:p1",
            client_order_id="cm1-1001-p1",
        )
    ]
    link = result.link
    assert link is not None
    assert (link.status, link.master_volume, link.follower_volume, link.seq) == (
        LinkStatus.OPENING,
        LOT,
        LOT // 2,
        1,
    )
    assert (link.master_sl, link.master_tp) == (1.095, 1.11)
    final = replan_is_quiet(tgt, "p1", m, Broker(follower()), result)
    assert final is not None and final.status is LinkStatus.OPEN


def test_a_mapped_symbol_and_slippage_give_a_market_range_order() -> None:
    tgt = target(slippage_points=30)
    m = master(position(1, 20_000, symbol_id=XAUUSD.symbol_id, entry=1987.654))
    (intent,) = plan(tgt, "p1", m, follower()).intents
    assert isinstance(intent, OpenPosition)
    assert (intent.symbol_id, intent.volume) == (F_GOLD.symbol_id, 20_000)
    assert (intent.slippage_points, intent.base_price) == (30, 1987.65)  # follower digits
    assert intent.relative_stop_loss is None and intent.relative_take_profit is None


def test_reverse_flips_the_side_and_swaps_stop_and_target() -> None:
    tgt = target(reverse=True)
    m = master(position(1, LOT, side=Side.BUY, sl=1.095, tp=1.11, entry=1.1))
    result = plan(tgt, "p1", m, follower())
    (intent,) = result.intents
    assert isinstance(intent, OpenPosition)
    assert intent.side is Side.SELL
    # the copy loses where the master gains: its stop is the master's target distance
    assert (intent.relative_stop_loss, intent.relative_take_profit) == (1000, 500)
    replan_is_quiet(tgt, "p1", m, Broker(follower()), result)


def test_without_copy_sl_tp_no_levels_are_sent_or_followed() -> None:
    tgt = target(copy_sl_tp=False)
    m = master(position(1, LOT, sl=1.095, tp=1.11))
    (intent,) = plan(tgt, "p1", m, follower()).intents
    assert isinstance(intent, OpenPosition)
    assert (intent.relative_stop_loss, intent.relative_take_profit) == (None, None)
    moved = master(position(1, LOT, sl=1.097, tp=1.11))
    f = follower(copy_of("p1", 50, LOT))
    assert plan(tgt, "p1", moved, f, open_link(follower_volume=LOT)).intents == []


def test_a_partial_close_is_followed_proportionally() -> None:
    # master 1.00 -> 0.40 lots: the copy sized 0.50 goes to 0.20
    tgt = target(volume={"value": "0.5"})
    m = master(position(1, 4 * LOT // 10))
    f = follower(copy_of("p1", 50, LOT // 2))
    result = plan(tgt, "p1", m, f, open_link())
    assert result.intents == [ClosePosition(F, "p1", 50, 3 * LOT // 10)]
    broker = Broker(f)
    replan_is_quiet(tgt, "p1", m, broker, result)
    assert broker.state.positions[50].volume == 2 * LOT // 10


def test_a_remainder_below_the_minimum_closes_the_copy() -> None:
    tgt = target(volume={"value": "0.5"})
    # basis: 1.00 master lot -> a 0.01 lot copy; master now 0.10 lots -> 0.001 is below 0.01
    m = master(position(1, LOT // 10))
    f = follower(copy_of("p1", 50, 100_000))
    link = open_link(follower_volume=100_000)
    result = plan(tgt, "p1", m, f, link)
    assert result.intents == [ClosePosition(F, "p1", 50, 100_000)]
    final = replan_is_quiet(tgt, "p1", m, Broker(f), result)
    assert final is not None and final.status is LinkStatus.CLOSED  # not reopened


def test_a_full_close_closes_every_copy_and_then_the_link() -> None:
    tgt = target()
    f = follower(copy_of("p1", 50, LOT // 2), copy_of("p1", 51, LOT // 2))
    result = plan(tgt, "p1", master(), f, open_link(follower_volume=LOT))
    assert result.intents == [
        ClosePosition(F, "p1", 50, LOT // 2),
        ClosePosition(F, "p1", 51, LOT // 2),
    ]
    assert result.link is not None and result.link.status is LinkStatus.OPEN  # until gone
    final = replan_is_quiet(tgt, "p1", master(), Broker(f), result)
    assert final is not None and final.status is LinkStatus.CLOSED


def test_an_sl_tp_change_is_mirrored_in_absolute_levels() -> None:
    tgt = target()
    m = master(position(1, LOT, sl=1.09712, tp=None))
    f = follower(copy_of("p1", 50, LOT, sl=1.095, tp=1.11))
    link = open_link(follower_volume=LOT, master_sl=1.095, master_tp=1.11)
    result = plan(tgt, "p1", m, f, link)
    # both levels are sent: an omitted one would be cleared, which is what the master did
    assert result.intents == [AmendPositionProtection(F, "p1", 50, 1.09712, None)]
    assert result.link is not None and result.link.master_sl == 1.09712
    replan_is_quiet(tgt, "p1", m, Broker(f), result)


def test_reversed_levels_are_swapped_and_rounded_to_follower_digits() -> None:
    tgt = target(reverse=True)
    m = master(position(1, 10_000, symbol_id=XAUUSD.symbol_id, sl=1980.123, tp=2010.456))
    f = follower(copy_of("p1", 50, 10_000, symbol_id=F_GOLD.symbol_id, side=Side.SELL))
    link = open_link(master_volume=10_000, follower_volume=10_000)
    result = plan(tgt, "p1", m, f, link)
    assert result.intents == [AmendPositionProtection(F, "p1", 50, 2010.46, 1980.12)]


def test_a_trade_older_than_max_delay_is_skipped_once_and_for_all() -> None:
    tgt = target(max_delay_s=60)
    m = master(position(1, LOT, opened_ms=NOW_MS - 61_000))
    result = plan(tgt, "p1", m, follower())
    assert result.intents == []
    assert result.link is not None and result.link.status is LinkStatus.SKIPPED
    assert "max_delay_s=60" in result.link.reason and result.notes
    later = plan(tgt, "p1", m, follower(), result.link, now_ms=NOW_MS + 3_600_000)
    assert (later.intents, later.link) == ([], None)  # decided once, never revisited


def test_copy_existing_opens_positions_that_predate_the_start() -> None:
    old = master(position(1, LOT, opened_ms=STARTED_MS - 86_400_000))
    (intent,) = plan(target(copy_existing=True), "p1", old, follower()).intents
    assert isinstance(intent, OpenPosition)
    skipped = plan(target(copy_existing=False), "p1", old, follower()).link
    assert skipped is not None and "copy_existing is off" in skipped.reason
    # copy_existing does not excuse a trade made after the start but missed for too long
    late = master(position(1, LOT, opened_ms=STARTED_MS + 1_000))
    skipped = plan(target(copy_existing=True), "p1", late, follower()).link
    assert skipped is not None and skipped.status is LinkStatus.SKIPPED


def test_copy_existing_wins_over_max_delay_for_what_predates_the_start() -> None:
    """copy_existing asks for the master's book as it stands when copying (re)starts, however
    old each position is; max_delay_s guards what is opened after that (e.g. during downtime)."""
    tgt = target(copy_existing=True, max_delay_s=1)
    week_old = master(position(1, LOT, opened_ms=STARTED_MS - 7 * 86_400_000))
    (intent,) = plan(tgt, "p1", week_old, follower()).intents
    assert isinstance(intent, OpenPosition)
    missed = master(position(1, LOT, opened_ms=STARTED_MS + 1_000))  # after the start
    skipped = plan(tgt, "p1", missed, follower(), now_ms=STARTED_MS + 3_000).link
    assert skipped is not None and "max_delay_s=1" in skipped.reason


def test_positions_open_when_the_copy_starts_need_copy_existing_however_fresh() -> None:
    # opened 5 s before the destination first started, planned 2 s after: within max_delay,
    # but it was already open when the rule started
    just_before = master(position(1, LOT, opened_ms=STARTED_MS - 5_000))
    now = STARTED_MS + 2_000
    skipped = plan(target(), "p1", just_before, follower(), now_ms=now).link
    assert skipped is not None and skipped.status is LinkStatus.SKIPPED
    assert "already open when this copy started" in skipped.reason
    (intent,) = plan(target(copy_existing=True), "p1", just_before, follower(), now_ms=now).intents
    assert isinstance(intent, OpenPosition)
    just_after = master(position(1, LOT, opened_ms=STARTED_MS + 1_000))
    (intent,) = plan(target(), "p1", just_after, follower(), now_ms=now).intents
    assert isinstance(intent, OpenPosition)


def test_close_only_opens_nothing_but_reduces_closes_and_amends() -> None:
    tgt = target(mode="close_only")
    fresh = plan(tgt, "p1", master(position(1, LOT)), follower())
    assert fresh.intents == [] and fresh.link is not None
    assert fresh.link.status is LinkStatus.SKIPPED and "close_only" in fresh.link.reason
    f = follower(copy_of("p1", 50, LOT // 2))
    grown = plan(tgt, "p1", master(position(1, 2 * LOT)), f, open_link())
    assert grown.intents == []
    shrunk = plan(tgt, "p1", master(position(1, LOT // 2)), f, open_link())
    assert shrunk.intents == [ClosePosition(F, "p1", 50, LOT // 4)]
    moved = plan(tgt, "p1", master(position(1, LOT, sl=1.09)), f, open_link())
    assert moved.intents == [AmendPositionProtection(F, "p1", 50, 1.09, None)]


def test_frozen_does_nothing_at_all() -> None:
    tgt = target(mode="frozen")
    assert plan(tgt, "p1", master(position(1, LOT)), follower()).empty
    f = follower(copy_of("p1", 50, LOT))
    assert plan(tgt, "p1", master(), f, open_link()).empty  # not even closes


def test_liquidate_closes_everything_and_opens_nothing() -> None:
    tgt = target(liquidate=True)
    f = follower(copy_of("p1", 50, LOT // 2), copy_of("p1", 51, LOT // 2))
    m = master(position(1, LOT), position(2, LOT))
    result = plan(tgt, "p1", m, f, open_link(follower_volume=LOT))
    assert result.intents == [
        ClosePosition(F, "p1", 50, LOT // 2),
        ClosePosition(F, "p1", 51, LOT // 2),
    ]
    final = replan_is_quiet(tgt, "p1", m, Broker(f), result)
    assert final is not None and final.status is LinkStatus.CLOSED
    fresh = plan(tgt, "p2", m, f)
    assert fresh.intents == [] and fresh.link is not None
    assert fresh.link.status is LinkStatus.SKIPPED  # never opened once the stop lifts


def test_unlinked_labelled_copies_are_adopted_without_an_order() -> None:
    tgt = target(volume={"value": "0.5"})
    m = master(position(1, LOT, sl=1.095))
    f = follower(copy_of("p1", 50, 300_000, sl=1.095), copy_of("p1", 51, 200_000, sl=1.0))
    result = plan(tgt, "p1", m, f)
    link = result.link
    assert link is not None and link.status is LinkStatus.OPEN
    assert (link.master_volume, link.follower_volume) == (LOT, 500_000)  # what exists
    assert result.intents == [AmendPositionProtection(F, "p1", 51, 1.095, None)]
    replan_is_quiet(tgt, "p1", m, Broker(f), result)


def test_skipped_or_rejected_links_with_copies_follow_them() -> None:
    tgt = target()
    f = follower(copy_of("p1", 50, LOT))
    rejected = open_link(status=LinkStatus.REJECTED, reason="TIMEOUT", follower_volume=LOT)
    adopted = plan(tgt, "p1", master(position(1, LOT)), f, rejected)
    assert adopted.intents == []
    assert adopted.link is not None and adopted.link.status is LinkStatus.OPEN
    gone = plan(tgt, "p1", master(), f, open_link(status=LinkStatus.SKIPPED))
    assert gone.intents == [ClosePosition(F, "p1", 50, LOT)]
    assert plan(tgt, "p1", master(position(1, LOT)), follower(), rejected).empty


def test_orphan_copies_of_a_master_closed_while_away_are_closed() -> None:
    f = follower(copy_of("p1", 50, LOT))
    result = plan(target(), "p1", master(), f)
    assert result.intents == [ClosePosition(F, "p1", 50, LOT)]
    assert result.link is not None and result.link.status is LinkStatus.CLOSED
    assert result.link.seq == 1


def test_duplicate_copies_are_reduced_to_the_target_newest_first() -> None:
    tgt = target()
    f = follower(
        copy_of("p1", 50, LOT, opened_ms=NOW_MS - 500), copy_of("p1", 51, LOT, opened_ms=NOW_MS)
    )
    result = plan(tgt, "p1", master(position(1, LOT)), f, open_link(follower_volume=LOT))
    assert result.intents == [ClosePosition(F, "p1", 51, LOT)]
    replan_is_quiet(tgt, "p1", master(position(1, LOT)), Broker(f), result)


def test_a_copy_closed_on_the_follower_is_not_reopened() -> None:
    result = plan(target(), "p1", master(position(1, LOT)), follower(), open_link())
    assert result.intents == []
    assert result.link is not None and result.link.status is LinkStatus.CLOSED


def test_an_open_that_left_no_copy_is_retried_only_while_fresh() -> None:
    opening = open_link(status=LinkStatus.OPENING, follower_volume=LOT, seq=1)
    fresh = plan(target(), "p1", master(position(1, LOT)), follower(), opening)
    (intent,) = fresh.intents
    assert isinstance(intent, OpenPosition) and intent.client_order_id == "cm2-1001-p1"
    stale = master(position(1, LOT, opened_ms=NOW_MS - 120_000))
    late = plan(target(), "p1", stale, follower(), opening)
    assert late.intents == [] and late.link is not None
    assert late.link.status is LinkStatus.SKIPPED


def test_a_netted_master_volume_change_is_followed_on_a_netted_follower() -> None:
    tgt = target(volume={"value": "0.5"})
    m = master(position(1, 3 * LOT // 2), kind=AccountKind.NETTED)  # 1.00 -> 1.50 lots
    f = follower(copy_of("p1", 50, LOT // 2), kind=AccountKind.NETTED)
    result = plan(tgt, "p1", m, f, open_link())
    (intent,) = result.intents
    assert isinstance(intent, OpenPosition) and intent.volume == LOT // 4
    broker = Broker(f)
    replan_is_quiet(tgt, "p1", m, broker, result)
    assert list(broker.state.positions) == [50]  # the same position grew
    assert broker.state.positions[50].volume == 3 * LOT // 4


def test_a_netted_follower_never_mixes_two_items_in_one_position() -> None:
    tgt = target()
    m = master(position(1, LOT), position(2, LOT))
    f = follower(copy_of("p1", 50, LOT), kind=AccountKind.NETTED)
    result = plan(tgt, "p2", m, f)
    assert result.intents == [] and result.link is not None
    assert result.link.status is LinkStatus.SKIPPED
    assert "netted" in result.link.reason and "cm:1001:p1" in result.link.reason
    # within one reconciliation the first item claims the symbol
    broker = Broker(follower(kind=AccountKind.NETTED))
    links: dict[str, Link] = {}
    opened = intents_of(converge(tgt, m, broker, links))
    assert [i.key for i in opened] == ["p1"]
    assert links["p2"].status is LinkStatus.SKIPPED
    # a position the user holds by hand counts too
    manual = follower(position(70, LOT, symbol_id=F_EURUSD.symbol_id), kind=AccountKind.NETTED)
    held = plan(tgt, "p1", m, manual).link
    assert held is not None and "unlabelled" in held.reason


def test_filters_skip_with_a_reason() -> None:
    sell = master(position(1, LOT, side=Side.SELL))
    skipped = plan(target(sides="buy"), "p1", sell, follower()).link
    assert skipped is not None and "sides" in skipped.reason
    unmapped = plan(target(symbols={}), "p1", master(position(1, LOT)), follower()).link
    assert unmapped is not None and "unmapped symbol EURUSD (tried EURUSD)" in unmapped.reason
    excluded = target(symbols={"exclude": ["EURUSD"], "add_suffix": ".m"})
    not_selected = plan(excluded, "p1", master(position(1, LOT)), follower()).link
    assert not_selected is not None and "not selected" in not_selected.reason
    no_shorts = follower()
    no_shorts.symbols_by_name["EURUSD.m"] = dataclasses.replace(F_EURUSD, short_selling=False)
    shorted = plan(target(), "p1", sell, no_shorts).link
    assert shorted is not None and "short selling" in shorted.reason


def test_copies_on_the_wrong_side_are_closed() -> None:
    # the rule became reversed: the old buy copy is wrong for it
    tgt = target(reverse=True)
    f = follower(copy_of("p1", 50, LOT, side=Side.BUY))
    result = plan(tgt, "p1", master(position(1, LOT)), f, open_link(follower_volume=LOT))
    assert result.intents == [ClosePosition(F, "p1", 50, LOT)]


def test_waits_while_a_market_order_for_the_item_is_executing() -> None:
    executing = order_copy("p1", 60, LOT, kind=OrderKind.MARKET)
    result = plan(target(), "p1", master(position(1, LOT)), follower(executing))
    assert result.intents == [] and result.link is None and result.notes


def test_a_stop_already_in_profit_is_set_by_an_amend_once_the_copy_exists() -> None:
    tgt = target()
    m = master(position(1, LOT, entry=1.1, sl=1.102, tp=1.12))  # breakeven-plus stop
    first = plan(tgt, "p1", m, follower())
    (intent,) = first.intents
    assert isinstance(intent, OpenPosition)
    assert (intent.relative_stop_loss, intent.relative_take_profit) == (None, 2000)
    broker = Broker(follower())
    broker.apply(first.intents)
    second = plan(tgt, "p1", m, broker.state, first.link)
    (amend,) = second.intents
    assert isinstance(amend, AmendPositionProtection)
    assert (amend.stop_loss, amend.take_profit) == (1.102, 1.12)


def test_a_remainder_the_broker_could_not_keep_closes_the_whole_copy() -> None:
    # a symbol whose minimum (0.10) is above its step (0.01); two copies 0.10 + 0.15 and the
    # master went 0.25 -> 0.18: taking 0.07 off the newest would leave 0.08, below 0.10
    odd = dataclasses.replace(F_GOLD, min_volume=1_000, step_volume=100)
    tgt = target()
    m = master(position(1, 1_800, symbol_id=XAUUSD.symbol_id))
    f = follower(
        copy_of("p1", 50, 1_000, symbol_id=odd.symbol_id, opened_ms=NOW_MS - 500),
        copy_of("p1", 51, 1_500, symbol_id=odd.symbol_id, opened_ms=NOW_MS),
    )
    f.symbols_by_id[odd.symbol_id] = odd
    link = open_link(master_volume=2_500, follower_volume=2_500)
    result = plan(tgt, "p1", m, f, link)
    assert result.intents == [ClosePosition(F, "p1", 51, 1_500)]
    # 0.10 stays; the 0.08 shortfall is below the minimum, so nothing is reopened
    final = replan_is_quiet(tgt, "p1", m, Broker(f), result)
    assert final is not None and final.status is LinkStatus.OPEN


def test_levels_decided_but_never_seen_on_the_copy_are_amended_again() -> None:
    tgt = target()
    m = master(position(1, LOT, sl=1.09, tp=1.12))
    f = follower(copy_of("p1", 50, LOT, sl=1.08, tp=1.13))  # the amend never arrived
    link = open_link(follower_volume=LOT, master_sl=1.09, master_tp=1.12)
    assert plan(tgt, "p1", m, f, link).intents == [], "a confirmed mirror is trusted"
    unconfirmed = dataclasses.replace(link, levels_confirmed=False)
    result = plan(tgt, "p1", m, f, unconfirmed)
    assert result.intents == [AmendPositionProtection(F, "p1", 50, 1.09, 1.12)]
    assert result.link is not None and not result.link.levels_confirmed
    done = follower(copy_of("p1", 50, LOT, sl=1.09, tp=1.12))
    seen = plan(tgt, "p1", m, done, result.link)
    assert seen.intents == [] and seen.link is not None and seen.link.levels_confirmed


def test_filled_copies_of_an_amended_origin_order_are_resized_on_its_basis() -> None:
    """E: the follower's pending copy (2 lots) filled while the daemon was away; the master
    had amended its order to 3 lots before it filled too. Adopted at 2 lots before."""
    tgt = target()
    m = master(position(1, 3 * LOT))
    f = follower(copy_of("o5", 50, 2 * LOT))
    origin = Link("r", M, F, "o5", LinkStatus.CLOSED, 2 * LOT, 2 * LOT, seq=1)
    result = plan_key(
        tgt, "p1", m, f, None, NOW_MS, {"p1": "o5"}, no_rate, link_of={"o5": origin}.get
    )
    (increase,) = result.intents
    assert isinstance(increase, OpenPosition) and increase.volume == LOT
    assert result.link is not None and result.link.status is LinkStatus.OPEN
    assert (result.link.master_volume, result.link.follower_volume) == (2 * LOT, 2 * LOT)
    plain = plan_key(tgt, "p1", m, f, None, NOW_MS, {"p1": "o5"}, no_rate)
    assert plain.intents == [], "without the origin's basis: adopted as it is"

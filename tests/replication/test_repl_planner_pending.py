"""Planner scenarios for master pending orders (keys ``o<O>``) and their fills."""

from __future__ import annotations

from typing import Any

from cmamd.accounts.model import OrderKind, Side
from cmamd.replication.intents import (
    AmendPendingOrder,
    CancelPendingOrder,
    ClosePosition,
    OpenPosition,
    PlacePendingOrder,
)
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.planner import keys_for, origins_for

from .repl_kit import (
    F_EURUSD,
    FX_LOT,
    NOW_MS,
    STARTED_MS,
    Broker,
    F,
    converge,
    copy_of,
    follower,
    intents_of,
    master,
    order,
    order_copy,
    plan,
    position,
    target,
)

LOT = FX_LOT
EXPIRY = NOW_MS + 86_400_000


def order_link(**changes: Any) -> Link:
    fields: dict[str, Any] = {
        "rule": "main",
        "master_account_id": 1001,
        "follower_account_id": F,
        "key": "o3",
        "status": LinkStatus.OPEN,
        "master_volume": LOT,
        "follower_volume": LOT,
        "seq": 1,
    }
    fields.update(changes)
    return Link(**fields)


def test_a_pending_order_is_placed_at_the_same_price() -> None:
    m = master(order(3, LOT, price=1.091234, sl=1.085, tp=1.1, expiration_ms=EXPIRY, position_id=5))
    result = plan(target(), "o3", m, follower())
    assert result.intents == [
        PlacePendingOrder(
            follower_account_id=F,
            key="o3",
            symbol_id=F_EURUSD.symbol_id,
            side=Side.BUY,
            kind=OrderKind.LIMIT,
            volume=LOT,
            price=1.09123,  # rounded to the follower's 5 digits
            stop_loss=1.085,
            take_profit=1.1,
            expiration_ms=EXPIRY,
            label="cm:1001:o3",
            client_order_id="cm1-1001-o3",
        )
    ]
    link = result.link
    assert link is not None and link.status is LinkStatus.OPENING
    assert link.fill_key == "p5"  # so its fill can be handed over after a restart
    broker = Broker(follower())
    broker.apply(result.intents)
    again = plan(target(), "o3", m, broker.state, link)
    assert again.intents == [] and again.link is not None
    assert again.link.status is LinkStatus.OPEN


def test_a_reversed_pending_order_flips_side_kind_and_levels() -> None:
    m = master(order(3, LOT, kind=OrderKind.LIMIT, price=1.09, sl=1.085, tp=1.1))
    (intent,) = plan(target(reverse=True), "o3", m, follower()).intents
    assert isinstance(intent, PlacePendingOrder)
    assert (intent.side, intent.kind, intent.price) == (Side.SELL, OrderKind.STOP, 1.09)
    assert (intent.stop_loss, intent.take_profit) == (1.1, 1.085)
    m = master(order(3, LOT, kind=OrderKind.STOP, side=Side.SELL, price=1.09))
    (intent,) = plan(target(reverse=True), "o3", m, follower()).intents
    assert isinstance(intent, PlacePendingOrder)
    assert (intent.side, intent.kind) == (Side.BUY, OrderKind.LIMIT)


def test_a_master_amendment_is_mirrored_with_every_field() -> None:
    # the master moved its price and halved its volume; the copy follows both
    m = master(order(3, LOT // 2, price=1.0925, sl=1.088, expiration_ms=EXPIRY))
    f = follower(order_copy("o3", 40, LOT, price=1.09))
    result = plan(target(), "o3", m, f, order_link())
    assert result.intents == [
        AmendPendingOrder(
            follower_account_id=F,
            key="o3",
            order_id=40,
            kind=OrderKind.LIMIT,
            volume=LOT // 2,
            price=1.0925,
            stop_loss=1.088,
            take_profit=None,
            expiration_ms=EXPIRY,
        )
    ]
    broker = Broker(f)
    broker.apply(result.intents)
    assert plan(target(), "o3", m, broker.state, result.link).intents == []


def test_close_only_lets_a_pending_copy_shrink_but_never_grow() -> None:
    tgt = target(mode="close_only")
    f = follower(order_copy("o3", 40, LOT, price=1.09))
    grown = plan(tgt, "o3", master(order(3, 2 * LOT, price=1.09)), f, order_link())
    assert grown.intents == []
    shrunk = plan(tgt, "o3", master(order(3, LOT // 2, price=1.09)), f, order_link())
    (amend,) = shrunk.intents
    assert isinstance(amend, AmendPendingOrder) and amend.volume == LOT // 2
    fresh = plan(tgt, "o4", master(order(4, LOT)), follower())
    assert fresh.intents == [] and fresh.link is not None
    assert fresh.link.status is LinkStatus.SKIPPED


def test_a_cancelled_master_order_cancels_the_copy() -> None:
    f = follower(order_copy("o3", 40, LOT))
    result = plan(target(), "o3", master(), f, order_link())
    assert result.intents == [CancelPendingOrder(F, "o3", 40)]
    broker = Broker(f)
    broker.apply(result.intents)
    after = plan(target(), "o3", master(), broker.state, result.link)
    assert after.intents == [] and after.link is not None
    assert after.link.status is LinkStatus.CLOSED


def test_a_filled_master_order_becomes_a_market_copy_when_the_follower_did_not_fill() -> None:
    tgt = target()
    m = master(position(5, LOT, sl=1.085))  # order o3 filled into p5 a second ago
    f = follower(order_copy("o3", 40, LOT))
    origins = {"p5": "o3"}
    handed = plan(tgt, "o3", m, f, order_link(), origins=origins)
    assert handed.intents == [] and handed.link is not None
    assert handed.link.status is LinkStatus.CLOSED  # the position's key takes over
    taken = plan(tgt, "p5", m, f, origins=origins)
    assert taken.intents[0] == CancelPendingOrder(F, "p5", 40)
    assert isinstance(taken.intents[1], OpenPosition) and taken.intents[1].volume == LOT
    assert taken.link is not None and taken.link.origin_key == "o3"
    broker = Broker(f)
    broker.apply(taken.intents)
    assert plan(tgt, "p5", m, broker.state, taken.link, origins=origins).intents == []


def test_a_copy_filled_with_its_master_is_adopted_by_the_position() -> None:
    tgt = target()
    m = master(position(5, LOT))
    f = follower(copy_of("o3", 50, LOT))  # the follower's pending copy filled too
    result = plan(tgt, "p5", m, f, origins={"p5": "o3"})
    assert result.intents == []
    assert result.link is not None and result.link.status is LinkStatus.OPEN
    assert result.link.follower_volume == LOT
    # and when the master position closes, that copy is closed with it
    closing = plan(tgt, "p5", master(), f, result.link, origins={"p5": "o3"})
    assert closing.intents == [ClosePosition(F, "p5", 50, LOT)]


def test_a_copy_that_filled_before_the_master_is_kept_and_not_placed_again() -> None:
    m = master(order(3, LOT, position_id=5))
    f = follower(copy_of("o3", 50, LOT))
    result = plan(target(), "o3", m, f, order_link(status=LinkStatus.OPENING))
    assert result.intents == []
    assert result.link is not None and result.link.status is LinkStatus.OPEN
    # the position's key does not touch it while the master order still waits
    assert plan(target(), "p5", m, f, origins=origins_for(m, [])).empty


def test_a_master_cancelled_after_the_follower_filled_closes_that_fill() -> None:
    tgt = target()
    links = {"o3": order_link(fill_key="p5")}
    f = follower(copy_of("o3", 50, LOT))
    broker = Broker(f)
    # p5 never opened on the master: the order's own key closes what its copy became
    assert "o3" in keys_for(tgt, master(), f, links)
    plans = converge(tgt, master(), broker, links)
    assert intents_of(plans) == [ClosePosition(F, "o3", 50, LOT)]
    assert broker.state.positions == {}
    assert intents_of(converge(tgt, master(), broker, links)) == []


def test_an_ended_order_with_no_known_fill_closes_its_filled_copies() -> None:
    f = follower(copy_of("o3", 50, LOT), order_copy("o3", 40, LOT))
    result = plan(target(), "o3", master(), f)
    assert result.intents == [CancelPendingOrder(F, "o3", 40), ClosePosition(F, "o3", 50, LOT)]
    assert result.link is not None and result.link.status is LinkStatus.CLOSED


def test_a_copy_cancelled_on_the_follower_is_not_placed_again() -> None:
    result = plan(target(), "o3", master(order(3, LOT)), follower(), order_link())
    assert result.intents == []
    assert result.link is not None and result.link.status is LinkStatus.CLOSED


def test_duplicate_pending_copies_are_cancelled_keeping_the_oldest() -> None:
    f = follower(order_copy("o3", 40, LOT), order_copy("o3", 41, LOT))
    result = plan(target(), "o3", master(order(3, LOT)), f, order_link())
    assert result.intents == [CancelPendingOrder(F, "o3", 41)]


def test_unlinked_pending_copies_are_adopted_and_corrected() -> None:
    f = follower(order_copy("o3", 40, LOT, price=1.08))
    result = plan(target(), "o3", master(order(3, LOT, price=1.09)), f)
    assert result.link is not None and result.link.status is LinkStatus.OPEN
    (amend,) = result.intents
    assert isinstance(amend, AmendPendingOrder) and amend.price == 1.09


def test_pending_orders_that_are_not_copied() -> None:
    skipped = {
        "copy_pending off": plan(
            target(copy_pending=False), "o3", master(order(3, LOT)), follower()
        ),
        "stop limit": plan(
            target(), "o3", master(order(3, LOT, kind=OrderKind.STOP_LIMIT)), follower()
        ),
        "on an open position": plan(
            target(), "o3", master(position(5, LOT), order(3, LOT, position_id=5)), follower()
        ),
        "existing": plan(
            target(), "o3", master(order(3, LOT, updated_ms=STARTED_MS - 1)), follower()
        ),
    }
    for why, result in skipped.items():
        assert result.intents == [], why
        assert result.link is not None and result.link.status is LinkStatus.SKIPPED, why
    existing = master(order(3, LOT, updated_ms=STARTED_MS - 1))
    (intent,) = plan(target(copy_existing=True), "o3", existing, follower()).intents
    assert isinstance(intent, PlacePendingOrder)


def test_with_copy_pending_off_the_fill_is_copied_at_market() -> None:
    tgt = target(copy_pending=False)
    broker = Broker(follower())
    links: dict[str, Link] = {}
    assert intents_of(converge(tgt, master(order(3, LOT, position_id=5)), broker, links)) == []
    (intent,) = intents_of(converge(tgt, master(position(5, LOT)), broker, links))
    assert isinstance(intent, OpenPosition) and intent.key == "p5"


def test_a_master_market_order_in_flight_is_left_to_its_position() -> None:
    m = master(order(3, LOT, kind=OrderKind.MARKET))
    assert plan(target(), "o3", m, follower()).empty
    assert keys_for(target(), m, follower(), {}) == []


def test_liquidate_cancels_pending_copies() -> None:
    f = follower(order_copy("o3", 40, LOT))
    result = plan(target(liquidate=True), "o3", master(order(3, LOT)), f, order_link())
    assert result.intents == [CancelPendingOrder(F, "o3", 40)]
    fresh = plan(target(liquidate=True), "o4", master(order(4, LOT)), follower())
    assert fresh.intents == [] and fresh.link is not None
    assert fresh.link.status is LinkStatus.SKIPPED


def test_origins_for_merges_every_source_strongest_last() -> None:
    m = master(
        order(3, LOT, position_id=5),
        order(4, LOT, position_id=1),
        position(1, LOT),
        position(8, LOT),
    )
    links = [
        order_link(key="o7", fill_key="p8"),
        order_link(key="o12", fill_key="p13"),  # p13 never opened: o12 was cancelled
        Link("main", 1001, F, "p9", LinkStatus.OPEN, origin_key="o6"),
    ]
    origins = origins_for(m, links, {"p10": "o11"})
    # o4 adds to the open p1: not an origin
    assert origins == {"p5": "o3", "p8": "o7", "p9": "o6", "p10": "o11"}


def test_only_origins_decide_who_owns_a_filled_copy() -> None:
    # The order's link knows its fill (p5), the position's link knows its origin (o3), but
    # the origins mapping given does not: each key must act as if it alone knew nothing,
    # or both would claim the follower's position.
    tgt = target()
    f = follower(copy_of("o3", 50, LOT))
    o_link = order_link(fill_key="p5")
    p_link = Link("main", 1001, F, "p5", LinkStatus.OPEN, LOT, LOT, origin_key="o3")
    by_order = plan(tgt, "o3", master(), f, o_link)
    by_position = plan(tgt, "p5", master(), f, p_link)
    assert by_order.intents == [ClosePosition(F, "o3", 50, LOT)]
    assert by_position.intents == []
    # with the mapping (what plan_all builds from the links), the position's key owns it
    origins = origins_for(master(), [o_link, p_link])
    assert plan(tgt, "o3", master(), f, o_link, origins=origins).intents == []
    owned = plan(tgt, "p5", master(), f, p_link, origins=origins)
    assert owned.intents == [ClosePosition(F, "p5", 50, LOT)]
    # and a full reconciliation closes it exactly once
    broker = Broker(f)
    links = {"o3": o_link, "p5": p_link}
    assert intents_of(converge(tgt, master(), broker, links)) == [ClosePosition(F, "p5", 50, LOT)]


def test_an_expiration_the_master_dropped_is_left_on_the_copy() -> None:
    # AmendOrderReq cannot remove an expiration: asking for none would be asked forever
    f = follower(order_copy("o3", 40, LOT, expiration_ms=EXPIRY))
    assert plan(target(), "o3", master(order(3, LOT)), f, order_link()).intents == []
    later = EXPIRY + 1_000
    (amend,) = plan(target(), "o3", master(order(3, LOT, expiration_ms=later)), f).intents
    assert isinstance(amend, AmendPendingOrder) and amend.expiration_ms == later

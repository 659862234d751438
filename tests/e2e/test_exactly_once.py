"""Exactly-once across restarts, reconciles, stale events and interrupted requests.

Each test reproduces one way a settled decision used to be taken again (issue 7, A-F).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import yaml

from cmamd.protocol.codec import Envelope
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication import trade_requests
from cmamd.replication.executor import Replicator
from cmamd.replication.intents import AmendPositionProtection
from cmamd.replication.labels import label
from cmamd.replication.links import Link, LinkStatus
from cmamd.sim import SimServer

from .kit import DaemonProcess, eventually, new_order_requests, write_yaml

RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]
ACCOUNTS = ["master", "follower-hedged"]
NEW_ORDER = 2106
READY = '"event": "ready"'


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
    assert new_order_requests(sim, follower, since=mark) == [], "a settled copy was made again"
    assert sim.broker.positions(follower) == [] and sim.broker.orders(follower) == []
    assert {p.position_id for p in sim.broker.positions(ids["master"])} == {position}


RECONCILE = 2124


async def test_c_events_arriving_while_a_reconcile_is_in_flight_are_not_overwritten(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    follower = ids["follower-hedged"]
    daemon = daemons(make_config(ACCOUNTS, RULES))
    await daemon.start()
    closing = sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    await daemon.settle()
    master = daemon.daemon.sessions["master"]
    # The reply is computed when the request arrives and held back: what happens on the
    # master meanwhile reaches the daemon first, as when events cross a reconcile reply.
    sim.delay_responses(0.5, {RECONCILE})
    mark = len(sim.record)
    reconcile = asyncio.create_task(master.resync())
    await eventually(
        lambda: any(r.name == "ProtoOAReconcileReq" for r in sim.record[mark:]), 5, "asked"
    )
    opened = sim.place_market_order(ids["master"], "GBPUSD", "sell", 200_000)
    sim.close_position(ids["master"], closing)
    await reconcile
    sim.delay_responses(0)
    await daemon.settle()
    assert set(master.state.positions) == {opened}, "the reconcile reply overwrote the events"
    copies = sim.broker.positions(follower)
    assert [(c.label, c.volume) for c in copies] == [(label(ids["master"], f"p{opened}"), 200_000)]


async def test_d_a_replayed_open_event_of_a_closed_trade_opens_nothing(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    follower = ids["follower-hedged"]
    daemon = daemons(make_config(ACCOUNTS, RULES))
    await daemon.start()
    master = daemon.daemon.sessions["master"]
    seen: list[Envelope] = []

    def keep(envelope: Envelope) -> None:
        message = envelope.message
        if (
            isinstance(message, pb.ProtoOAExecutionEvent)
            and message.ctidTraderAccountId == (ids["master"])
        ):
            seen.append(envelope)

    master.connection.add_listener(keep)
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    await daemon.settle()
    sim.close_position(ids["master"], position)
    await daemon.settle()
    assert sim.broker.positions(follower) == []
    mark = len(sim.record)
    for envelope in seen[:2]:  # the open's events, delivered again (a replay)
        master._on_envelope(envelope)
    await daemon.settle()
    assert position not in master.state.positions, "a stale event took the state back"
    assert new_order_requests(sim, follower, since=mark) == []
    assert sim.broker.positions(follower) == []


async def test_b_an_sl_tp_amend_that_never_left_is_sent_after_a_restart(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, monkeypatch: Any
) -> None:
    follower = ids["follower-hedged"]
    config = make_config(ACCOUNTS, RULES)
    first = daemons(config)
    await first.start()
    sim.pause_prices()
    position = sim.place_market_order(
        ids["master"], "EURUSD", "buy", 100_000, relative_stop_loss=500, relative_take_profit=500
    )
    await first.settle()
    build_request = trade_requests.build_request

    def dies_before_an_amend_leaves(intent: Any) -> Any:
        if isinstance(intent, AmendPositionProtection):
            raise RuntimeError("killed after the link was written, before the send")
        return build_request(intent)

    monkeypatch.setattr(trade_requests, "build_request", dies_before_an_amend_leaves)
    sim.amend_position_sltp(ids["master"], position, stop_loss=1.07, take_profit=1.09)
    await eventually(
        lambda: any(e.action == "AmendPositionProtection" for e in first.daemon.store.journal()),
        5,
        "amend decided",
    )
    await first.settle()
    assert await first.stop() == 0
    monkeypatch.setattr(trade_requests, "build_request", build_request)
    second = daemons(config)
    await second.start()
    await second.settle()
    (copy,) = sim.broker.positions(follower)
    assert (copy.stop_loss, copy.take_profit) == (1.07, 1.09)


async def test_an_open_confirmed_by_the_order_history_is_not_made_again_after_a_kill(
    sim: SimServer, ids: dict[str, int], make_config: Any, tmp_path: Path
) -> None:
    """Killed after the copy filled, before hearing so; the copy is closed by hand while
    the daemon is down: the link still says OPENING, the follower shows nothing, and only
    the broker's order history tells that the copy existed."""
    follower = ids["follower-hedged"]
    daemon = DaemonProcess(make_config(ACCOUNTS, RULES), {}, tmp_path / "daemon.log")
    daemon.start()
    try:
        await eventually(lambda: READY in daemon.log_text(), 15, "ready")
        sim.swallow_next(1, {NEW_ORDER})
        position = sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
        await eventually(lambda: sim.broker.positions(follower), 10, "copy filled")
        daemon.kill()
        (copy,) = sim.broker.positions(follower)
        sim.close_position(follower, copy.position_id)  # by hand, while the daemon is down
        mark = len(sim.record)
        daemon.start()
        await eventually(lambda: daemon.log_text().count(READY) >= 2, 15, "restarted")
        await eventually(lambda: "not reopening" in daemon.log_text(), 10, "planned")
        assert new_order_requests(sim, follower, since=mark) == []
        assert sim.broker.positions(follower) == []
        assert [p.position_id for p in sim.broker.positions(ids["master"])] == [position]
        assert await daemon.terminate() == 0
    finally:
        daemon.kill()


async def test_d_orphans_and_missed_copies_from_lost_events_are_repaired_periodically(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    follower = ids["follower-hedged"]
    config = make_config(ACCOUNTS, RULES)
    write_yaml(config, {**yaml.safe_load(config.read_text()), "audit_interval_s": 1})
    daemon = daemons(config)
    await daemon.start()
    closed = sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    await daemon.settle()
    assert len(sim.broker.positions(follower)) == 1
    # the master's session ends without the event: the daemon hears nothing more of it
    sim.disconnect_account(ids["master"], silently=True)
    sim.close_position(ids["master"], closed)
    opened = sim.place_market_order(ids["master"], "GBPUSD", "sell", 200_000)

    def repaired() -> bool:
        labels = [p.label for p in sim.broker.positions(follower)]
        return labels == [label(ids["master"], f"p{opened}")]

    await eventually(repaired, 10, "orphan closed and missed copy made")


async def test_f_a_second_daemon_on_the_same_follower_is_noticed_and_not_fought(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    follower = ids["follower-hedged"]
    first_config = make_config(ACCOUNTS, RULES)
    data = yaml.safe_load(first_config.read_text())
    second_config = write_yaml(
        tmp_path / "second.yaml", {**data, "state_dir": str(tmp_path / "other-state")}
    )
    first, second = daemons(first_config), daemons(second_config)
    await first.start()
    await second.start()
    first_id = first.daemon.replicator.instance
    assert first_id != second.daemon.replicator.instance
    sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)

    def frozen() -> list[str]:
        return [
            d.daemon.status_line()
            for d in (first, second)
            if "another cmamd copies onto: follower-hedged" in d.daemon.status_line()
        ]

    await eventually(lambda: bool(frozen()), 10, "the second copier noticed")
    await first.settle()
    await second.settle()
    mark = len(sim.record)
    sim.place_market_order(ids["master"], "GBPUSD", "sell", 100_000)
    await first.settle()
    await second.settle()
    closes = [
        r
        for r in sim.record
        if isinstance(r.message, pb.ProtoOAClosePositionReq)
        and r.message.ctidTraderAccountId == follower
    ]
    assert closes == [], "the two daemons fought over the copies"
    sent = new_order_requests(sim, follower, since=mark)
    assert len(sent) == 2 - len(frozen()), "a frozen follower got orders"
    # the first trade may have been copied by both before either saw the other's order
    assert len(sim.broker.positions(follower)) - len(sent) in (1, 2)


async def test_f_copies_left_by_our_former_self_after_a_lost_store_are_not_a_rival(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    follower = ids["follower-hedged"]
    config = make_config(ACCOUNTS, RULES)
    first = daemons(config)
    await first.start()
    sim.pause_prices()
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    order = sim.place_pending_order(ids["master"], "USDJPY", "buy", "limit", 100_000, 149.5)
    await first.settle()
    old_instance = first.daemon.replicator.instance
    assert await first.stop() == 0
    shutil.rmtree(tmp_path / "state")  # the state store is lost
    second = daemons(config)
    await second.start()
    assert second.daemon.replicator.instance != old_instance
    sim.set_price("USDJPY", 149.488, 149.5)  # the old pending copy fills now, with the master's
    await eventually(lambda: not sim.broker.orders(ids["master"]), 5, "master order filled")
    sim.set_price("USDJPY", 150.0, 150.012)
    await second.settle()
    sim.close_position(ids["master"], position)
    await second.settle()
    assert "another cmamd" not in second.daemon.status_line()
    held = [(p.label, p.volume) for p in sim.broker.positions(follower)]
    assert held == [(label(ids["master"], f"o{order}"), 100_000)]


async def test_an_unanswered_open_whose_copy_was_closed_meanwhile_is_not_made_again(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    follower = ids["follower-hedged"]
    daemon = daemons(make_config(ACCOUNTS, RULES))
    await daemon.start()
    sim.swallow_next(1, {NEW_ORDER})  # the copy fills; the daemon never hears of it
    sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    await eventually(lambda: sim.broker.positions(follower), 5, "copy filled")
    (copy,) = sim.broker.positions(follower)
    sim.close_position(follower, copy.position_id)  # by hand, before the daemon reconciles
    await eventually(lambda: daemon.daemon.replicator.stats.unknown == 1, 10, "outcome unknown")
    await daemon.settle(timeout=20)
    assert len(new_order_requests(sim, follower)) == 1, "the copy was made a second time"
    assert sim.broker.positions(follower) == []


async def test_killed_between_the_fill_and_its_record_the_open_is_not_made_again(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, monkeypatch: Any
) -> None:
    """The process dies right after the copy filled, as it records that; the copy is then
    closed by hand. Whatever was written first must not leave the item looking unopened."""
    follower = ids["follower-hedged"]
    config = make_config(ACCOUNTS, RULES)
    first = daemons(config)
    await first.start()
    save_link = Replicator._save_link

    def dies_recording_the_fill(self: Replicator, dest_id: str, link: Link) -> None:
        if link.status is LinkStatus.OPEN:
            raise RuntimeError("killed while recording the fill")
        save_link(self, dest_id, link)

    monkeypatch.setattr(Replicator, "_save_link", dies_recording_the_fill)
    sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    await eventually(lambda: sim.broker.positions(follower), 5, "copy filled")
    await first.settle()
    assert await first.stop() == 0
    monkeypatch.setattr(Replicator, "_save_link", save_link)
    (copy,) = sim.broker.positions(follower)
    sim.close_position(follower, copy.position_id)  # by hand, while the daemon is down
    mark = len(sim.record)
    second = daemons(config)
    await second.start()
    await second.settle()
    assert new_order_requests(sim, follower, since=mark) == [], "the copy was made a second time"

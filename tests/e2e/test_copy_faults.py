"""Ambiguous outcomes, dropped links and crashes: no duplicate, no orphan, no missed close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmamd.accounts.timing import SessionTiming
from cmamd.connection.errors import SendTimeout
from cmamd.daemon.timing import DaemonTiming
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication.labels import client_order_id, label
from cmamd.replication.links import Link, LinkStatus
from cmamd.sim import SimConfig, SimServer
from cmamd.state.store import StateStore

from .kit import DaemonProcess, eventually, new_order_requests

NEW_ORDER = 2106
READY = '"event": "ready"'
RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]
ACCOUNTS = ["master", "follower-hedged"]


async def test_unanswered_order_is_settled_by_reconcile_not_resent(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    daemon = daemons(make_config(ACCOUNTS, RULES))
    await daemon.start()
    sim.swallow_next(1, {NEW_ORDER})  # the broker fills it; the daemon never hears back
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 1_000_000)
    await eventually(lambda: daemon.daemon.replicator.stats.unknown == 1, 10, "unknown outcome")
    await daemon.settle()
    copies = sim.broker.positions(ids["follower-hedged"])
    assert [(c.volume, c.label) for c in copies] == [
        (1_000_000, label(ids["master"], f"p{position}"))
    ]
    assert len(new_order_requests(sim, ids["follower-hedged"])) == 1
    outcomes = [e.outcome for e in daemon.daemon.store.journal(ids["follower-hedged"])]
    assert outcomes == ["resolved"]
    sim.close_position(ids["master"], position)
    await daemon.settle()
    assert sim.broker.positions(ids["follower-hedged"]) == []


async def test_link_dropped_mid_copy_reconnects_reauthorises_and_does_not_duplicate(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    daemon = daemons(make_config(ACCOUNTS, RULES))
    await daemon.start()
    connections_before = len(sim.connections)
    sim.delay_responses(1.0, {NEW_ORDER})
    position = sim.place_market_order(ids["master"], "GBPUSD", "sell", 500_000)
    await eventually(lambda: new_order_requests(sim, ids["follower-hedged"]), 5, "copy sent")
    assert sim.drop_connections() >= 1
    sim.delay_responses(0)
    await eventually(lambda: len(sim.connections) > connections_before, 10, "reconnected")
    await eventually(lambda: daemon.daemon.replicator.stats.unknown == 1, 10, "outcome unknown")
    await daemon.settle()
    copies = sim.broker.positions(ids["follower-hedged"])
    assert [(c.side.value, c.volume) for c in copies] == [("sell", 500_000)]
    assert len(new_order_requests(sim, ids["follower-hedged"])) == 1
    reauth = [r.message for r in sim.record if isinstance(r.message, pb.ProtoOAAccountAuthReq)]
    assert {r.ctidTraderAccountId for r in reauth[-2:]} == {
        ids["master"],
        ids["follower-hedged"],
    }
    sim.close_position(ids["master"], position)
    await daemon.settle()
    assert sim.broker.positions(ids["follower-hedged"]) == []


async def test_crash_after_link_write_before_send_opens_exactly_once(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES)
    first = daemons(config)
    await first.start()
    assert await first.stop() == 0
    # What a kill -9 between "link and journal committed" and "request sent" leaves behind:
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 300_000)
    key = f"p{position}"
    link = Link(
        "r",
        ids["master"],
        ids["follower-hedged"],
        key,
        LinkStatus.OPENING,
        master_volume=300_000,
        follower_volume=300_000,
        seq=1,
        updated_ms=int(time.time() * 1000),
    )
    with StateStore.open(tmp_path / "state") as store:
        store.record_intent(
            link.to_dict(),
            "crashed-intent",
            ids["follower-hedged"],
            key,
            "OpenPosition",
            client_order_id(ids["master"], key, 1),
            {"volume": 300_000},
        )
    second = daemons(config)
    await second.start()
    await second.settle()
    copies = sim.broker.positions(ids["follower-hedged"])
    assert [(c.volume, c.label) for c in copies] == [(300_000, label(ids["master"], key))]
    journal = {e.intent_id: e for e in second.daemon.store.journal(ids["follower-hedged"])}
    assert journal["crashed-intent"].outcome == "resolved"


async def test_crash_after_send_before_fill_adopts_the_copy_on_restart(
    sim: SimServer, ids: dict[str, int], make_config: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES)
    daemon = DaemonProcess(config, {}, tmp_path / "daemon.log")
    daemon.start()
    try:
        await eventually(
            lambda: any(r.name == "ProtoOAReconcileReq" for r in sim.record), 15, "start"
        )
        await eventually(lambda: READY in daemon.log_text(), 15, "ready")
        sim.swallow_next(1, {NEW_ORDER})
        position = sim.place_market_order(ids["master"], "XAUUSD", "buy", 500)
        await eventually(lambda: new_order_requests(sim, ids["follower-hedged"]), 10, "copy sent")
        daemon.kill()  # the order is filled at the broker; the daemon never saw the answer
        mark = len(sim.record)
        daemon.start()
        await eventually(lambda: daemon.log_text().count(READY) >= 2, 15, "restarted")
        await asyncio.sleep(0.5)
        copies = sim.broker.positions(ids["follower-hedged"])
        assert [(c.volume, c.label) for c in copies] == [
            (500, label(ids["master"], f"p{position}"))
        ]
        assert new_order_requests(sim, ids["follower-hedged"], since=mark) == []
        assert "settled by reconcile" in daemon.log_text()
        sim.close_position(ids["master"], position)
        await eventually(
            lambda: not sim.broker.positions(ids["follower-hedged"]), 10, "copy closed"
        )
        assert await daemon.terminate() == 0
    finally:
        daemon.kill()


async def test_repeated_kill_9_during_trading_converges_without_duplicates(
    sim: SimServer, ids: dict[str, int], make_config: Any, tmp_path: Path
) -> None:
    rules = [
        {
            "name": "r",
            "source": "master",
            "destinations": [
                {"account": "follower-hedged"},
                {"account": "follower-suffix", "symbols": {"add_suffix": ".m"}},
            ],
        }
    ]
    config = make_config(["master", "follower-hedged", "follower-suffix"], rules)
    daemon = DaemonProcess(config, {}, tmp_path / "daemon.log")
    opened: list[int] = []

    def ready_times(count: int) -> Callable[[], bool]:
        return lambda: daemon.log_text().count(READY) >= count

    try:
        for cycle in range(3):
            daemon.start()
            await eventually(ready_times(cycle + 1), 15, "ready")
            for symbol in ("EURUSD", "XAUUSD", "US500"):
                opened.append(
                    sim.place_market_order(
                        ids["master"], symbol, "buy", 1_000 if symbol != "EURUSD" else 100_000
                    )
                )
            if len(opened) > 3:
                sim.close_position(ids["master"], opened.pop(0))
            await asyncio.sleep(0.005 * (cycle + 1))  # kill at a different instant each time
            daemon.kill()
        daemon.start()
        await eventually(lambda: daemon.log_text().count(READY) >= 4, 15, "final start")
        master_keys = {label(ids["master"], f"p{p}") for p in opened}

        def converged() -> bool:
            for follower in ("follower-hedged", "follower-suffix"):
                labels = [p.label for p in sim.broker.positions(ids[follower])]
                if sorted(labels) != sorted(master_keys):
                    return False
            return True

        await eventually(converged, 15, "followers converge on the master")
        assert await daemon.terminate() == 0
    finally:
        daemon.kill()


async def test_close_refused_while_trading_is_disabled_is_retried_until_it_passes(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("cmamd.replication.executor.RETRY_FIRST_S", 0.2)
    rules = [
        {
            "name": "r",
            "source": "master",
            "destinations": [{"account": "follower-suffix", "symbols": {"add_suffix": ".m"}}],
        }
    ]
    daemon = daemons(make_config(["master", "follower-suffix"], rules))
    await daemon.start()
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 200_000)
    await daemon.settle()
    assert len(sim.broker.positions(ids["follower-suffix"])) == 1
    sim.set_trading_mode("EURUSD.m", "disabled", broker="Suffix Markets")
    sim.close_position(ids["master"], position)
    await eventually(lambda: daemon.daemon.replicator.stats.rejected >= 2, 10, "refused, retried")
    assert len(sim.broker.positions(ids["follower-suffix"])) == 1
    sim.set_trading_mode("EURUSD.m", "enabled", broker="Suffix Markets")
    await eventually(lambda: not sim.broker.positions(ids["follower-suffix"]), 10, "closed at last")


async def test_an_account_dropped_without_notice_is_reauthorised_and_the_copy_made_once(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    daemon = daemons(make_config(ACCOUNTS, RULES))
    await daemon.start()
    sim.disconnect_account(ids["follower-hedged"], silently=True)  # the event is lost
    position = sim.place_market_order(ids["master"], "EURUSD", "sell", 300_000)
    await eventually(lambda: daemon.daemon.replicator.stats.deferred == 1, 10, "refused")
    await eventually(lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 10, "copied")
    await daemon.settle()
    (copy,) = sim.broker.positions(ids["follower-hedged"])
    assert (copy.volume, copy.label) == (300_000, label(ids["master"], f"p{position}"))
    sent = new_order_requests(sim, ids["follower-hedged"])
    assert len(sent) == 2, "refused once (not executed), then sent once after re-auth"
    assert daemon.daemon.replicator.stats.rejected == 0
    link = daemon.daemon.store.get_link("r", ids["master"], ids["follower-hedged"], f"p{position}")
    assert link is not None and link["status"] == "open"


async def test_tokens_are_rotated_before_they_expire_and_copying_goes_on(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    ttl_ms = 2_628_000 * 1000  # the simulator's token lifetime
    session = SessionTiming(
        refresh_margin_ms=ttl_ms - 1500,  # due 1.5 s in
        refresh_margin_fraction=1.0,
        token_timer_min_s=0.1,
    )
    config = make_config(ACCOUNTS, RULES)
    data = yaml.safe_load(config.read_text())
    for account in data["accounts"]:
        del account["access_token"]  # a refresh token alone: rotated at start
    config.write_text(yaml.safe_dump(data))
    daemon = daemons(config, timing=DaemonTiming(session=session))
    await daemon.start()

    def refreshes() -> int:
        return sum(1 for r in sim.record if r.name == "ProtoOARefreshTokenReq")

    assert refreshes() == 2  # one per token group (masters, followers) at start
    await eventually(lambda: refreshes() >= 4, 10, "rotated again before expiry")
    await eventually(
        lambda: all(s.ready.is_set() for s in daemon.daemon.sessions.values()), 10, "re-auth"
    )
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    await eventually(lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 10, "copy")
    described = {a["account_id"]: a for a in sim.describe()["accounts"]}
    stored = daemon.daemon.store.get_tokens(ids["follower-hedged"])
    assert stored is not None
    assert stored.refresh_token == described[ids["follower-hedged"]]["refresh_token"]
    sim.close_position(ids["master"], position)
    await eventually(lambda: not sim.broker.positions(ids["follower-hedged"]), 10, "closed")


async def test_an_order_never_sent_while_the_link_is_down_is_planned_again_once_it_is_back(
    sim: SimServer,
    ids: dict[str, int],
    make_config: Any,
    daemons: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The follower's link stays down longer than the send timeout (2 s here): the order
    never leaves the process (RequestNotSent). That is a warning, not a failed step, and
    the copy is made once the link is back, exactly once."""
    follower = ids["follower-hedged"]
    # two connections: the master's stays up and reports the trade while the follower's is down
    daemon = daemons(make_config(ACCOUNTS, RULES, api={"connections": {"demo": 2}}))
    await daemon.start()
    sessions = daemon.daemon.sessions
    assert sessions["master"].connection is not sessions["follower-hedged"].connection
    sim.maintenance(int(time.time() * 1000) + 60_000)  # no new session until lifted
    assert sim.drop_connections(follower) == 1
    await eventually(lambda: not sessions["follower-hedged"].connection.is_ready, 5, "link down")
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 400_000)
    await eventually(lambda: daemon.daemon.replicator.stats.deferred == 1, 10, "not sent")
    assert new_order_requests(sim, follower) == [] and sim.broker.positions(follower) == []

    sim.maintenance(None)
    await eventually(lambda: sim.broker.positions(follower) != [], 20, "copied once back")
    await daemon.settle()
    copies = sim.broker.positions(follower)
    assert [(c.volume, c.label) for c in copies] == [
        (400_000, label(ids["master"], f"p{position}"))
    ]
    assert len(new_order_requests(sim, follower)) == 1
    failures = [
        r for r in caplog.records if r.name.startswith("cmamd") and r.levelno >= logging.ERROR
    ]
    assert failures == [], [r.getMessage() for r in failures]
    deferred = [r for r in caplog.records if "not sent" in r.getMessage()]
    assert deferred and all(r.levelno == logging.WARNING for r in deferred)


async def test_an_order_not_sent_while_the_link_stays_up_is_planned_again(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, monkeypatch: Any
) -> None:
    """Not sent for want of send budget, the link never went down: no reconnect, no
    reconcile would plan the item again, so the executor must."""
    follower = ids["follower-hedged"]
    daemon = daemons(make_config(ACCOUNTS, RULES))
    await daemon.start()
    connection = daemon.daemon.sessions["follower-hedged"].connection
    real_request = connection.request
    refused: list[Any] = []

    async def first_order_not_sent(message: Any, **kw: Any) -> Any:
        if isinstance(message, pb.ProtoOANewOrderReq) and not refused:
            refused.append(message)
            raise SendTimeout("ProtoOANewOrderReq not sent within 2 s (waiting for send budget)")
        return await real_request(message, **kw)

    monkeypatch.setattr(connection, "request", first_order_not_sent)
    position = sim.place_market_order(ids["master"], "EURUSD", "buy", 200_000)
    await eventually(lambda: sim.broker.positions(follower) != [], 10, "copied after all")
    await daemon.settle()
    copies = sim.broker.positions(follower)
    assert [(c.volume, c.label) for c in copies] == [
        (200_000, label(ids["master"], f"p{position}"))
    ]
    assert len(refused) == 1 and len(new_order_requests(sim, follower)) == 1
    assert daemon.daemon.replicator.stats.deferred == 1


class TestShortTokenLifetime:
    """Tokens living 4 s (a stand-in for any lifetime under a day): each new pair is rotated
    after three quarters of its life, once, not as soon as it arrives."""

    @pytest.fixture
    async def sim(self) -> AsyncIterator[SimServer]:
        async with SimServer(SimConfig.default(token_ttl_s=4)) as server:
            yield server

    async def test_a_short_lived_token_is_rotated_at_a_fraction_of_its_life_not_in_a_burst(
        self, sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
    ) -> None:
        config = make_config(ACCOUNTS, RULES)
        data = yaml.safe_load(config.read_text())
        for account in data["accounts"]:
            del account["access_token"]  # a refresh token alone: rotated at start
        config.write_text(yaml.safe_dump(data))
        daemon = daemons(config, timing=DaemonTiming(session=SessionTiming(token_timer_min_s=0.1)))
        await daemon.start()

        def refreshes() -> list[float]:
            return [r.at for r in sim.record if r.name == "ProtoOARefreshTokenReq"]

        assert len(refreshes()) == 2  # one per token group (masters, followers) at start
        await eventually(lambda: len(refreshes()) >= 4, 10, "rotated again before expiry")
        first, second = refreshes()[1], refreshes()[3]
        # due 3 s after the first pair arrived (a quarter of 4 s before its expiry)
        assert second - first >= 2.5, f"rotated {second - first:.2f} s after the previous one"
        await eventually(
            lambda: all(s.ready.is_set() for s in daemon.daemon.sessions.values()), 10, "re-auth"
        )
        position = sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
        await eventually(lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 10, "copy")
        sim.close_position(ids["master"], position)
        await eventually(lambda: not sim.broker.positions(ids["follower-hedged"]), 10, "closed")

"""``cmamd ctl`` end to end: each command, through the real client and the control socket,
against an in-process daemon copying on the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cmamd.accounts.model import Side
from cmamd.demo.master import MasterTrader
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication.labels import parse_label
from cmamd.sim import SimServer

from .ctl_kit import (
    Daemons,
    MakeConfig,
    copied_keys,
    copies,
    ctl,
    destination,
    operated,
    rule,
    socket_dir,
    started,
    status,
)
from .kit import ROOT, DaemonProcess, WorldClock, eventually, new_order_requests

__all__ = ["socket_dir"]  # the fixture, used by name
NEW_ORDER, CLOSE_POSITION = "ProtoOANewOrderReq", "ProtoOAClosePositionReq"


# status ---------------------------------------------------------------------------------
async def test_status_names_every_account_and_counts_copies_with_latency(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
    world_clock: WorldClock,
) -> None:
    config = operated(
        make_config, socket_dir, ["master", "follower-hedged"], [rule("follower-hedged")]
    )
    daemon = await started(daemons, config)
    await master.market("EURUSD", Side.BUY, "0.10")
    await daemon.settle()
    world_clock.advance(3600)  # the status is dated by the daemon's clock
    doc = await status(socket_dir)
    assert abs(doc["daemon"]["time_ms"] - world_clock() * 1000) < 60_000
    accounts = {a["name"]: a for a in doc["accounts"]}
    assert set(accounts) == {"master", "follower-hedged"}
    follower = accounts["follower-hedged"]
    assert follower["ready"] and follower["connected"] and follower["reason"] is None
    assert follower["open_copies"] == 1
    assert follower["balance"] == "50000.00"
    assert "token_expires_ms" in follower  # None: bootstrap tokens say no expiry
    assert follower["modes"] == {"main": {"mode": "on", "source": "yaml"}}
    dest = destination(doc, "follower-hedged")
    assert (dest["done"], dest["rejected"], dest["skipped"]) == (1, 0, 0)
    assert dest["last_latency_ms"] > 0 and dest["median_latency_ms"] > 0
    assert doc["queue"] == {"depth": 0, "in_progress": 0}
    (connection,) = doc["connections"]
    assert connection["max_rps"] == 50 and connection["state"] == "ready"

    code, text, _ = await ctl(socket_dir, "status")
    assert code == 0
    assert "follower-hedged" in text and "1 done, 0 skipped, 0 rejected" in text
    assert "mode on (from yaml)" in text


# pause / resume / mode ------------------------------------------------------------------
async def test_pause_stops_opening_but_follows_closes_and_survives_a_restart(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    hedged, netted = ids["follower-hedged"], ids["follower-netted"]
    config = operated(
        make_config,
        socket_dir,
        ["master", "follower-hedged", "follower-netted"],
        [rule("follower-hedged", "follower-netted")],
    )
    first = await started(daemons, config)
    before = await master.market("EURUSD", Side.BUY, "0.10")
    await first.settle()
    assert len(copies(sim, hedged, ids["master"])) == 1

    code, out, _ = await ctl(socket_dir, "pause", "follower-hedged")
    assert (code, out) == (0, "follower-hedged: paused\n")
    paused = await master.market("GBPUSD", Side.SELL, "0.10")
    await first.settle()
    assert copied_keys(sim, hedged, ids["master"]) == [f"p{before}"]
    assert len(copies(sim, netted, ids["master"])) == 2, "the other follower still copies"
    assert destination(await status(socket_dir), "follower-hedged")["mode_source"] == "ctl pause"

    await master.close(before, master.volume("EURUSD", "0.10"))  # closes are still followed
    await first.settle()
    assert copies(sim, hedged, ids["master"]) == []
    assert await first.stop() == 0

    second = await started(daemons, config)
    await second.settle()
    dest = destination(await status(socket_dir), "follower-hedged")
    assert (dest["mode"], dest["mode_source"]) == ("close_only", "ctl pause")
    assert copies(sim, hedged, ids["master"]) == [], f"p{paused} stays uncopied after a restart"

    code, out, _ = await ctl(socket_dir, "resume", "follower-hedged")
    assert (code, out) == (0, "follower-hedged: resumed\n")
    dest = destination(await status(socket_dir), "follower-hedged")
    assert (dest["mode"], dest["mode_source"]) == ("on", "yaml")
    after = await master.market("USDJPY", Side.BUY, "0.10")
    await second.settle()
    assert copied_keys(sim, hedged, ids["master"]) == [f"p{after}"]


async def test_pause_a_rule_and_mode_override_persist_and_show_their_source(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    hedged = ids["follower-hedged"]
    config = operated(
        make_config,
        socket_dir,
        ["master", "follower-hedged", "follower-netted"],
        [rule("follower-hedged", mode="close_only"), rule("follower-netted", name="second")],
    )
    daemon = await started(daemons, config)
    assert destination(await status(socket_dir), "follower-hedged")["mode_source"] == "yaml"

    code, out, _ = await ctl(socket_dir, "mode", "follower-hedged", "on")
    assert (code, out) == (0, "follower-hedged: mode on\n")
    code, out, _ = await ctl(socket_dir, "pause", "second")
    assert (code, out) == (0, "rule second: paused\n")
    position = await master.market("EURUSD", Side.BUY, "0.10")
    await daemon.settle()
    assert len(copies(sim, hedged, ids["master"])) == 1, "ctl mode on overrides the YAML"
    assert copies(sim, ids["follower-netted"], ids["master"]) == [], "the paused rule opens nothing"
    assert await daemon.stop() == 0

    again = await started(daemons, config)
    await again.settle()
    doc = await status(socket_dir)
    assert (
        destination(doc, "follower-hedged")["mode"],
        destination(doc, "follower-hedged")["mode_source"],
    ) == ("on", "ctl")
    assert destination(doc, "follower-netted", "second")["mode_source"] == "ctl pause"
    code, _, _ = await ctl(socket_dir, "mode", "follower-hedged", "frozen")
    assert code == 0
    await master.close(position, master.volume("EURUSD", "0.10"))
    await again.settle()
    assert len(copies(sim, hedged, ids["master"])) == 1, "frozen: not even closes"


# flatten --------------------------------------------------------------------------------
async def test_flatten_all_closes_before_queued_opens_and_stays_frozen_across_a_restart(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    hedged = ids["follower-hedged"]
    config = operated(
        make_config,
        socket_dir,
        ["master", "follower-hedged"],
        [rule("follower-hedged")],
        api={"max_rps": 4, "request_timeout_s": 10},  # waits for the budget, never times out
    )
    daemon = await started(daemons, config)
    for symbol in ("EURUSD", "GBPUSD", "USDJPY"):
        await master.market(symbol, Side.BUY, "0.10")
    await daemon.settle()
    held = {p.position_id for p in copies(sim, hedged, ids["master"])}
    assert len(held) == 3

    # two more master trades whose copies must wait: two reconciles of both accounts
    # (QUERY, ahead of opens) spend the 4-per-second budget first
    assert daemon.daemon is not None and daemon.daemon.store is not None
    store = daemon.daemon.store
    before = len(sim.record)
    reconciling = [asyncio.create_task(ctl(socket_dir, "reconcile")) for _ in range(2)]
    assert daemon.daemon.pool is not None
    (connection,) = daemon.daemon.pool.connections
    # the reconciles must be waiting for the budget before the master trades, or the
    # copies' opens could reach the budget first
    await eventually(lambda: connection.stats["queued"] >= 1, 10, "reconciles queued")
    for symbol in ("EURUSD", "GBPUSD"):
        await master.market(symbol, Side.SELL, "0.10")

    def opens_queued() -> bool:
        sent = new_order_requests(sim, hedged, since=before)
        return len(store.open_intents()) == 2 and not sent

    await eventually(opens_queued, 10, "two copies' opens journaled and waiting for the budget")
    mark = len(sim.record)
    code, out, err = await ctl(socket_dir, "flatten", "--all", "--yes")
    assert code == 0, err + out
    assert "flattened and frozen: main:follower-hedged" in out
    assert out.count("  closed  follower-hedged: close 0.10 lots") >= 3
    await asyncio.gather(*reconciling)  # they only spent the budget

    sent = [
        r
        for r in sim.record[mark:]
        if isinstance(r.message, pb.ProtoOANewOrderReq | pb.ProtoOAClosePositionReq)
        and r.message.ctidTraderAccountId == hedged
    ]
    closes = [
        i
        for i, r in enumerate(sent)
        if isinstance(r.message, pb.ProtoOAClosePositionReq) and r.message.positionId in held
    ]
    opens = [i for i, r in enumerate(sent) if r.name == NEW_ORDER]
    assert len(closes) == 3
    assert len(opens) <= 2 and (not opens or max(closes) < min(opens)), [r.name for r in sent]
    await eventually(lambda: copies(sim, hedged, ids["master"]) == [], 15, "late copies closed")
    await daemon.settle()
    assert await daemon.stop() == 0

    # the same destinations with the full budget (a quicker start)
    full_budget = operated(
        make_config, socket_dir, ["master", "follower-hedged"], [rule("follower-hedged")],
        name="full.yaml",
    )  # fmt: skip
    again = await started(daemons, full_budget)
    await again.settle()
    dest = destination(await status(socket_dir), "follower-hedged")
    assert (dest["mode"], dest["mode_source"]) == ("frozen", "ctl flatten")
    await master.market("EURUSD", Side.BUY, "0.10")
    await again.settle()
    assert copies(sim, hedged, ids["master"]) == []

    # an explicit mode ends the flatten
    code, _, _ = await ctl(socket_dir, "mode", "follower-hedged", "on")
    assert code == 0
    later = await master.market("GBPUSD", Side.BUY, "0.10")
    await again.settle()
    assert copied_keys(sim, hedged, ids["master"]) == [f"p{later}"]


async def test_flatten_asks_for_confirmation_and_does_nothing_without_it(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    config = operated(
        make_config, socket_dir, ["master", "follower-hedged"], [rule("follower-hedged")]
    )
    daemon = await started(daemons, config)
    await master.market("EURUSD", Side.BUY, "0.10")
    await daemon.settle()
    code, _, err = await ctl(socket_dir, "flatten", "--follower", "follower-hedged")
    assert code == 1 and "--yes" in err, "stdin is not a terminal here"
    assert len(copies(sim, ids["follower-hedged"], ids["master"])) == 1
    assert destination(await status(socket_dir), "follower-hedged")["mode"] == "on"


# reconcile / retry / errors --------------------------------------------------------------
async def test_reconcile_retry_and_plain_errors(
    sim: SimServer,
    ids: dict[str, int],
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    code, _, err = await ctl(socket_dir, "status")
    assert code == 3 and "not running" in err

    config = operated(
        make_config, socket_dir, ["master", "follower-hedged"], [rule("follower-hedged")]
    )
    await started(daemons, config)
    code, out, _ = await ctl(socket_dir, "reconcile")
    assert (code, out) == (0, "reconciled: follower-hedged, master\n")
    code, out, _ = await ctl(socket_dir, "reconcile", "master")
    assert (code, out) == (0, "reconciled: master\n")

    code, _, err = await ctl(socket_dir, "reconcile", "nobody")
    assert code == 1 and "[unknown_account]" in err and "nobody" in err
    code, _, err = await ctl(socket_dir, "pause", "nothing")
    assert code == 1 and "[unknown_account]" in err
    code, _, err = await ctl(socket_dir, "retry", "master")
    assert code == 1 and "[refused]" in err and "ready" in err
    code, _, err = await ctl(socket_dir, "order", "--group", "none", "buy", "EURUSD", "1")
    assert code == 1 and "[unknown_group]" in err

    recent = (await status(socket_dir))["recent_actions"]
    assert [(e["action"], e["result"]) for e in recent] == [
        ("reconcile", "ok"),
        ("reconcile", "ok"),
        ("reconcile", "unknown_account"),
        ("pause", "unknown_account"),
        ("retry", "refused"),
        ("order", "unknown_group"),
    ]
    assert {e["uid"] for e in recent} == {os.getuid()}
    code, text, _ = await ctl(socket_dir, "status")
    assert "RECENT CONTROL ACTIONS" in text and '{"account": "nobody"}' in text


async def test_retry_restarts_a_failed_account_and_order_refuses_it(
    sim: SimServer,
    ids: dict[str, int],
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    config = operated(
        make_config, socket_dir, ["master", "follower-hedged"], [rule("follower-hedged")]
    )
    data = yaml.safe_load(config.read_text())
    described = {a["name"]: a for a in sim.describe()["accounts"]}
    follower = next(a for a in data["accounts"] if a["name"] == "follower-hedged")
    follower["access_token"] = "not-a-token"
    follower["refresh_token"] = "not-a-token-either"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    daemon = await started(daemons, config)
    doc = await status(socket_dir)
    account = next(a for a in doc["accounts"] if a["name"] == "follower-hedged")
    assert not account["ready"] and account["reason"]

    code, _, err = await ctl(
        socket_dir, "order", "--accounts", "follower-hedged", "buy", "EURUSD", "0.1"
    )
    assert code == 1 and "[not_ready]" in err

    # the operator fixes the token (as `cmamd auth` would), then retries
    assert daemon.daemon is not None and daemon.daemon.store is not None
    from cmamd.state.records import StoredTokens

    daemon.daemon.store.put_tokens(
        ids["follower-hedged"],
        StoredTokens(
            described["follower-hedged"]["access_token"],
            described["follower-hedged"]["refresh_token"],
        ),
    )
    code, out, err = await ctl(socket_dir, "retry", "follower-hedged")
    assert (code, out) == (0, "follower-hedged: ready\n"), err


# multi-account orders -------------------------------------------------------------------
async def test_group_order_lands_with_each_accounts_size_and_symbol_and_is_never_a_copy(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    hedged, suffix = ids["follower-hedged"], ids["follower-suffix"]
    groups = {
        "groups": [
            {
                "name": "desk",
                "sizing": "per_account",
                "members": [
                    {"account": "follower-hedged"},
                    {
                        "account": "follower-suffix",
                        "volume": {"mode": "multiplier", "value": 2},
                        "symbols": {"add_suffix": ".m"},
                    },
                ],
            }
        ]
    }
    # both accounts also follow the master: the planner must leave the ctl trades alone
    config = operated(
        make_config,
        socket_dir,
        ["master", "follower-hedged", "follower-suffix"],
        [
            rule("follower-hedged"),
            rule("follower-suffix", name="suffix", symbols={"add_suffix": ".m"}),
        ],
        groups,
    )
    daemon = await started(daemons, config)
    code, out, err = await ctl(
        socket_dir, "order", "--group", "desk", "buy", "EURUSD", "0.3", "--sl", "20", "--tp", "40"
    )
    assert code == 0, err + out
    held = {a: sim.broker.positions(a) for a in (hedged, suffix)}
    (on_hedged,), (on_suffix,) = held[hedged], held[suffix]
    assert on_hedged.symbol_id == sim.broker.symbol_named(hedged, "EURUSD").symbol_id
    assert on_suffix.symbol_id == sim.broker.symbol_named(suffix, "EURUSD.m").symbol_id
    assert (on_hedged.volume, on_suffix.volume) == (3_000_000, 6_000_000)
    assert on_hedged.label.startswith("ctl:desk:") and on_hedged.label == on_suffix.label
    assert parse_label(on_hedged.label) is None
    assert on_hedged.stop_loss == pytest.approx(on_hedged.entry_price - 0.0020)
    assert on_hedged.take_profit == pytest.approx(on_hedged.entry_price + 0.0040)

    # master activity makes the planner look at both followers: the ctl trades stay
    position = await master.market("EURUSD", Side.BUY, "0.10")
    await daemon.settle()
    await master.close(position, master.volume("EURUSD", "0.10"))
    await daemon.settle()
    assert [p.position_id for p in sim.broker.positions(hedged)] == [on_hedged.position_id]
    assert [p.position_id for p in sim.broker.positions(suffix)] == [on_suffix.position_id]

    code, out, err = await ctl(
        socket_dir, "close", "--accounts", "follower-hedged,follower-suffix", "GBPUSD"
    )
    assert (code, "nothing to do" in out) == (0, True), err
    code, out, err = await ctl(socket_dir, "close", "--group", "desk", "EURUSD")
    assert code == 0, err + out
    assert sim.broker.positions(hedged) == [] and sim.broker.positions(suffix) == []


async def test_order_on_accounts_trades_the_lots_given_and_skips_what_cannot_be_traded(
    sim: SimServer,
    ids: dict[str, int],
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    config = operated(make_config, socket_dir, ["master", "follower-hedged", "follower-suffix"], [])
    await started(daemons, config)
    code, out, _ = await ctl(
        socket_dir,
        "--json",
        "order",
        "--accounts",
        "follower-hedged,follower-suffix",
        "sell",
        "GBPUSD",
        "0.2",
    )
    assert code == 1, "one account has no GBPUSD (its broker says GBPUSD.m)"
    results = {r["account"]: r for r in json.loads(out)["results"]}
    assert results["follower-hedged"]["outcome"] == "done"
    assert results["follower-suffix"]["outcome"] == "skipped"
    assert "GBPUSD" in results["follower-suffix"]["detail"]
    (position,) = sim.broker.positions(ids["follower-hedged"])
    assert (position.volume, position.side.value) == (2_000_000, "sell")


# as systemd runs it -----------------------------------------------------------------------
async def test_a_daemon_process_serves_ctl_in_its_runtime_directory(
    sim: SimServer,
    ids: dict[str, int],
    make_config: MakeConfig,
    socket_dir: Path,
    tmp_path: Path,
) -> None:
    """RUNTIME_DIRECTORY (RuntimeDirectory=cmamd) holds the socket; `cmamd ctl` is the
    installed entry point; the socket goes away with the daemon."""
    config = make_config(["master", "follower-hedged"], [rule("follower-hedged")])
    daemon = DaemonProcess(config, {"RUNTIME_DIRECTORY": str(socket_dir)}, tmp_path / "d.log")
    path = socket_dir / "control.sock"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CMAMD_CONTROL_SOCKET": str(path)}

    async def run_ctl(*argv: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cmamd", "ctl", *argv,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    daemon.start()
    try:
        await eventually(lambda: '"event": "ready"' in daemon.log_text(), 20, "daemon ready")
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        code, out, err = await run_ctl("status", "--json")
        assert code == 0, err
        assert {a["name"] for a in json.loads(out)["accounts"]} == {"master", "follower-hedged"}
        code, _, err = await run_ctl("mode", "follower-hedged", "sideways")
        assert code == 2 and "invalid choice" in err
        code, out, _ = await run_ctl("pause", "follower-hedged")
        assert (code, out) == (0, "follower-hedged: paused\n")
        assert await daemon.terminate() == 0
    finally:
        daemon.kill()
    assert not path.exists()
    events = daemon.log_events()
    action = next(e for e in events if e["event"] == "control action")
    assert (action["action"], action["result"], action["peer_uid"]) == ("pause", "ok", os.getuid())
    code, _, err = await run_ctl("status")
    assert code == 3 and "not running" in err


async def test_a_pause_given_while_the_daemon_starts_holds_once_it_is_up(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    config = operated(
        make_config, socket_dir, ["master", "follower-hedged"], [rule("follower-hedged")]
    )
    sim.delay_responses(1.0)  # accounts come up slowly
    daemon = daemons(config)
    starting = asyncio.create_task(daemon.start())
    await eventually(lambda: (socket_dir / "control.sock").exists(), 10, "control socket")
    code, out, err = await ctl(socket_dir, "pause", "follower-hedged")
    assert (code, out) == (0, "follower-hedged: paused\n"), err
    assert daemon.daemon is not None and not daemon.daemon.started.is_set()
    sim.delay_responses(0)
    await starting
    await master.market("EURUSD", Side.BUY, "0.10")
    await daemon.settle()
    assert copies(sim, ids["follower-hedged"], ids["master"]) == []
    dest = destination(await status(socket_dir), "follower-hedged")
    assert (dest["mode"], dest["mode_source"]) == ("close_only", "ctl pause")

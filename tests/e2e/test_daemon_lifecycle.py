"""``cmamd run`` as systemd runs it: a real process, a real notify socket, real signals."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from polling import wait_until

from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.sim import SimServer

from .kit import ROOT, DaemonProcess, NotifySocket, eventually, write_yaml

READY = '"event": "ready"'
RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def start_daemon(config: Path, notify: NotifySocket, tmp_path: Path, **env: str) -> DaemonProcess:
    daemon = DaemonProcess(
        config, {"NOTIFY_SOCKET": str(notify.path), **env}, tmp_path / "daemon.log"
    )
    daemon.start()
    return daemon


def requests_of(sim: SimServer, conn_id: int, since: int = 0) -> list[str]:
    return [
        r.name
        for r in sim.record[since:]
        if r.conn_id == conn_id and r.name != "ProtoHeartbeatEvent"
    ]


async def reload(daemon: DaemonProcess, state_dir: Path) -> subprocess.CompletedProcess[str]:
    """``cmamd reload`` as ExecReload runs it (without blocking the simulator's loop)."""
    assert daemon.proc is not None
    args = [
        sys.executable,
        "-m",
        "cmamd",
        "reload",
        "--pid",
        str(daemon.proc.pid),
        "--state-dir",
        str(state_dir),
        "--timeout",
        "20",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": str(ROOT)}
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def test_ready_status_watchdog_and_graceful_stop(
    sim: SimServer, ids: dict[str, int], make_config: Any, notify: NotifySocket, tmp_path: Path
) -> None:
    config = make_config(["master", "follower-hedged", "follower-suffix"], RULES)
    daemon = start_daemon(config, notify, tmp_path, WATCHDOG_USEC="400000")
    try:
        await notify.wait_for(lambda m: m == "READY=1")
        # READY comes once every account is authorised and reconciled
        reconciled = {
            r.message.ctidTraderAccountId
            for r in sim.record
            if isinstance(r.message, pb.ProtoOAReconcileReq)
        }
        assert reconciled == {ids["master"], ids["follower-hedged"], ids["follower-suffix"]}
        status = await notify.wait_for(lambda m: m.startswith("STATUS="))
        assert "accounts 3/3 ready" in status and "queue 0" in status
        await wait_until(
            lambda: notify.drain().count("WATCHDOG=1") >= 3,
            2.0,
            0.02,
            what="pinged at half of WATCHDOG_USEC (0.2 s)",
        )
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
        assert "STOPPING=1" in notify.drain()
        assert '"event": "stopped"' in daemon.log_text()
    finally:
        daemon.kill()


async def test_invalid_reload_keeps_the_running_config_and_its_connections(
    sim: SimServer, ids: dict[str, int], make_config: Any, notify: NotifySocket, tmp_path: Path
) -> None:
    config = make_config(["master", "follower-hedged"], RULES)
    daemon = start_daemon(config, notify, tmp_path)
    try:
        await notify.wait_for(lambda m: m == "READY=1")
        (conn,) = [c for c in sim.connections if c.closed_at is None]
        mark = len(sim.record)
        good = config.read_text()
        broken = yaml.safe_load(good)
        broken["api"]["max_rps"] = 80
        broken["copy"][0]["destinations"][0]["account"] = "nobody"
        config.write_text(yaml.safe_dump(broken))
        result = await reload(daemon, tmp_path / "state")
        assert result.returncode == 1
        assert "api.max_rps" in result.stderr and "at most 50" in result.stderr
        messages = notify.drain()
        reloading = [m for m in messages if m.startswith("RELOADING=1")]
        assert reloading and re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading[-1])
        assert messages[-1] == "READY=1" or "READY=1" in messages[messages.index(reloading[-1]) :]
        # same connection, untouched, nothing re-sent; and the old rules still copy
        assert (
            conn.closed_at is None and len([c for c in sim.connections if c.closed_at is None]) == 1
        )
        assert requests_of(sim, conn.conn_id, mark) == []
        sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
        await eventually(
            lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 10, "copied"
        )
        config.write_text(good)
        assert (await reload(daemon, tmp_path / "state")).returncode == 0
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        daemon.kill()


async def test_reload_adding_and_removing_an_account_touches_only_that_account(
    sim: SimServer, ids: dict[str, int], make_config: Any, notify: NotifySocket, tmp_path: Path
) -> None:
    config = make_config(["master", "follower-hedged", "follower-netted"], RULES)
    daemon = start_daemon(config, notify, tmp_path)
    try:
        await notify.wait_for(lambda m: m == "READY=1")
        (conn,) = [c for c in sim.connections if c.closed_at is None]
        mark = len(sim.record)
        data = yaml.safe_load(config.read_text())
        added = make_config(
            ["master", "follower-hedged", "follower-suffix"], RULES, name="added.yaml"
        )
        data["accounts"] = yaml.safe_load(added.read_text())["accounts"]
        data["copy"][0]["destinations"].append(
            {"account": "follower-suffix", "symbols": {"add_suffix": ".m"}}
        )
        write_yaml(config, data)
        result = await reload(daemon, tmp_path / "state")
        assert result.returncode == 0, result.stderr
        touched = {
            r.message.ctidTraderAccountId
            for r in sim.record[mark:]
            if r.conn_id == conn.conn_id
            and hasattr(r.message, "ctidTraderAccountId")
            and r.name != "ProtoOAGetPositionUnrealizedPnLReq"
        }
        assert touched == {ids["follower-suffix"], ids["follower-netted"]}
        names = requests_of(sim, conn.conn_id, mark)
        assert "ProtoOAAccountLogoutReq" in names and "ProtoOAAccountAuthReq" in names
        auths = [
            r.message.ctidTraderAccountId
            for r in sim.record[mark:]
            if isinstance(r.message, pb.ProtoOAAccountAuthReq)
        ]
        assert auths == [ids["follower-suffix"]]
        assert [c.conn_id for c in sim.connections if c.closed_at is None] == [conn.conn_id]
        sim.place_market_order(ids["master"], "EURUSD", "sell", 200_000)
        await eventually(
            lambda: len(sim.broker.positions(ids["follower-suffix"])) == 1,
            10,
            "new follower copies",
        )
        assert len(sim.broker.positions(ids["follower-hedged"])) == 1
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        daemon.kill()


async def test_sigkill_restart_keeps_links_and_rotated_tokens_and_logs_no_secret(
    sim: SimServer, ids: dict[str, int], make_config: Any, notify: NotifySocket, tmp_path: Path
) -> None:
    config = make_config(["master", "follower-hedged"], RULES)
    before = sim.describe()
    daemon = start_daemon(config, notify, tmp_path)
    try:
        await notify.wait_for(lambda m: m == "READY=1")
        position = sim.place_market_order(ids["master"], "EURUSD", "buy", 400_000)
        await eventually(
            lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 10, "copied"
        )
        # the broker revokes the followers' access token: the daemon refreshes (single-use
        # refresh token), stores the new pair, re-authorises
        sim.invalidate_token(ids["follower-hedged"])
        await eventually(lambda: "tokens refreshed" in daemon.log_text(), 10, "refresh")
        await eventually(
            lambda: daemon.log_text().count('"event": "reconciled"') >= 3, 10, "re-auth"
        )
        daemon.kill()
        # the config's bootstrap tokens are dead now; only the stored ones work
        daemon.start()
        await eventually(lambda: daemon.log_text().count(READY) >= 2, 15, "restart")
        assert len(sim.broker.positions(ids["follower-hedged"])) == 1, "no duplicate after restart"
        sim.close_position(ids["master"], position)
        await eventually(
            lambda: not sim.broker.positions(ids["follower-hedged"]), 10, "link kept: close copied"
        )
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        daemon.kill()
    after = sim.describe()
    log = daemon.log_text()
    secrets = {before["client_secret"]}
    for described in (before, after):
        for account in described["accounts"]:
            secrets |= {account["access_token"], account["refresh_token"]}
    assert len(secrets) >= 5, "tokens did rotate"
    leaked = [s for s in secrets if s in log]
    assert leaked == [], "a secret reached the logs"
    assert len(log.splitlines()) > 20

"""Accounts always come back (issue 8.2, 8.4, 8.5, 8.6): no connection at start, refused
credentials, a reload adding an account that cannot connect, a state store that fails,
a wrong bootstrap token pair, and ``cmamd reload`` finding the config's state_dir."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from polling import wait_until

from cmamd.daemon import reload_status
from cmamd.sim import SimServer

from .kit import ROOT, DaemonProcess, InProcessDaemon, eventually, write_yaml

RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]
ACCOUNTS = ["master", "follower-hedged"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def sighup(daemon: InProcessDaemon, state_dir: Path, timeout: float = 20) -> Any:
    before = reload_status.read(state_dir)
    assert daemon.daemon is not None
    daemon.daemon._signals.put_nowait(signal.SIGHUP)

    def outcome() -> Any:
        status = reload_status.read(state_dir)
        if status is not None and (before is None or status.seq > before.seq):
            return status
        return None

    await wait_until(outcome, timeout, 0.05, what="the reload's outcome")
    return outcome()


async def test_no_server_at_start_still_gets_ready_naming_the_accounts(
    make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES, api={"port": free_port()})
    daemon = daemons(config)
    started = await daemon.start(timeout=30)  # READY without a connection, no crash
    status = started.status_line()
    assert "accounts 0/2 ready" in status
    assert "not ready: follower-hedged (" in status and "master (" in status


async def test_a_server_in_maintenance_at_start_is_retried_until_it_is_back(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    sim.maintenance(int(time.time() * 1000) + 3_600_000)
    daemon = daemons(make_config(ACCOUNTS, RULES))
    started = await daemon.start(timeout=30)
    assert "not ready" in started.status_line()
    sim.maintenance(None)
    await eventually(
        lambda: all(s.ready.is_set() for s in started.sessions.values()), 30, "accounts up"
    )
    sim.place_market_order(ids["master"], "EURUSD", "buy", 200_000)
    await eventually(lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 10, "copy")


async def test_refused_application_credentials_exit_78_after_one_attempt(
    sim: SimServer, make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES)
    (tmp_path / "client_secret").write_text("not-the-secret")
    daemon = DaemonProcess(config, {}, tmp_path / "daemon.log")
    daemon.start()
    try:
        code = await daemon.wait(30)
    finally:
        daemon.kill()
    assert code == 78, daemon.log_text()[-3000:]
    assert "application credentials refused" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()
    auths = [r for r in sim.record if r.name == "ProtoOAApplicationAuthReq"]
    assert len(auths) == 1, "no retry against the auth endpoint"


async def test_reload_adding_an_account_that_cannot_connect_applies_and_copies_on(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES, api={"live_host": "127.0.0.2"})
    daemon = daemons(config)
    started = await daemon.start()
    data = yaml.safe_load(config.read_text())
    described = {a["name"]: a for a in sim.describe()["accounts"]}
    suffix = described["follower-suffix"]
    data["accounts"].append(
        {
            "name": "follower-suffix",
            "account_id": suffix["account_id"],
            "live": True,  # its connection goes to 127.0.0.2, where nothing listens
            "access_token": suffix["access_token"],
            "refresh_token": suffix["refresh_token"],
        }
    )
    data["copy"][0]["destinations"].append({"account": "follower-suffix"})
    write_yaml(config, data)
    status = await sighup(daemon, tmp_path / "state")
    assert status.ok and not status.partial, status
    assert "not ready: follower-suffix (" in started.status_line()
    sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    await eventually(lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 10, "copy")
    await daemon.settle()
    assert started.replicator is not None and started.replicator.stats.done == 1


async def test_a_failing_store_write_is_reported_and_the_copy_made_once_it_works(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    daemon = daemons(make_config(ACCOUNTS, RULES))
    started = await daemon.start()
    assert started.store is not None
    disk_full = {"on": True}
    refused_writes = [0]
    record_intent = started.store.record_intent

    def failing(*args: Any, **kw: Any) -> Any:
        if disk_full["on"]:
            refused_writes[0] += 1
            raise sqlite3.OperationalError("database or disk is full")
        return record_intent(*args, **kw)

    started.store.record_intent = failing
    sim.place_market_order(ids["master"], "EURUSD", "buy", 300_000)
    await eventually(lambda: "STATE STORE FAULT" in started.status_line(), 10, "fault shown")
    # planned again after its pause, and refused again: still nothing sent
    await eventually(lambda: refused_writes[0] >= 2, 10, "a second attempt")
    assert sim.broker.positions(ids["follower-hedged"]) == []
    disk_full["on"] = False
    await eventually(
        lambda: len(sim.broker.positions(ids["follower-hedged"])) == 1, 40, "copied later"
    )
    await eventually(lambda: "STATE STORE FAULT" not in started.status_line(), 10, "cleared")


def with_wrong_bootstrap_pair(config: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write ``config`` with a typo in follower-hedged's token pair; return (good, bad)."""
    good = yaml.safe_load(config.read_text())
    bad = yaml.safe_load(config.read_text())
    bad["accounts"][1]["access_token"] = "typo-access-token"
    bad["accounts"][1]["refresh_token"] = "typo-refresh-token"
    write_yaml(config, bad)
    return good, bad


async def test_a_wrong_bootstrap_pair_is_fixed_by_the_config_and_a_restart(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES)
    good, bad = with_wrong_bootstrap_pair(config)
    first = daemons(config)
    started = await first.start()
    session = started.sessions["follower-hedged"]
    # a refused token pair waits for `cmamd auth` (or a fixed config), visibly
    await eventually(lambda: session.status == "needs re-authorisation", 15, "refused for good")
    # fixed in the config, applied by SIGHUP (retries failed accounts)
    write_yaml(config, good)
    assert (await sighup(first, tmp_path / "state")).ok
    await eventually(
        lambda: started.sessions["follower-hedged"].ready.is_set(), 15, "retried on SIGHUP"
    )
    assert await first.stop() == 0
    # and the same after a restart: the wrong pair is not what the store keeps now
    write_yaml(config, bad)
    second = daemons(config)
    restarted = (await second.start()).sessions["follower-hedged"]
    await eventually(restarted.ready.is_set, 15, "the stored (good) pair is kept")


async def test_a_wrong_bootstrap_pair_fixed_before_a_restart(
    sim: SimServer, make_config: Any, daemons: Any
) -> None:
    config = make_config(ACCOUNTS, RULES)
    good, _ = with_wrong_bootstrap_pair(config)
    first = daemons(config)
    session = (await first.start()).sessions["follower-hedged"]
    # a refused token pair waits for `cmamd auth` (or a fixed config), visibly
    await eventually(lambda: session.status == "needs re-authorisation", 15, "refused for good")
    assert await first.stop() == 0
    write_yaml(config, good)
    second = daemons(config)
    fixed = (await second.start()).sessions["follower-hedged"]
    await eventually(fixed.ready.is_set, 15, "the config's new pair is used")


async def test_cmamd_reload_finds_the_state_dir_of_the_daemons_config(
    sim: SimServer, make_config: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES)
    daemon = DaemonProcess(config, {}, tmp_path / "daemon.log")
    daemon.start()
    try:
        await eventually(lambda: '"event": "ready"' in daemon.log_text(), 30, "ready")
        assert daemon.proc is not None
        args = [sys.executable, "-m", "cmamd", "reload", "--pid", str(daemon.proc.pid)]
        env = {"PYTHONPATH": str(ROOT)}  # no STATE_DIRECTORY: only the config says where
        proc = await asyncio.create_subprocess_exec(
            *args, "--timeout", "15", stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "configuration reloaded" in out.decode()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        daemon.kill()


async def test_reset_tokens_puts_the_configs_pair_back_for_one_account(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, tmp_path: Path
) -> None:
    from cmamd.cli import main as cli_main
    from cmamd.state.store import StateStore, StoredTokens

    config = make_config(ACCOUNTS, RULES)
    good = yaml.safe_load(config.read_text())["accounts"][1]
    with StateStore.open(tmp_path / "state") as store:
        store.put_tokens(ids["follower-hedged"], StoredTokens("stale", "stale-r", None, 0))
        store.put_tokens(ids["master"], StoredTokens("keep", "keep-r", None, 0))
    argv = ["reset-tokens", "--config", str(config), "--account", "follower-hedged"]
    assert cli_main(argv) == 0
    assert cli_main(["reset-tokens", "--config", str(config), "--account", "nobody"]) == 78
    with StateStore.open(tmp_path / "state") as store:
        reset = store.get_tokens(ids["follower-hedged"])
        kept = store.get_tokens(ids["master"])
    assert reset is not None and reset.access_token == good["access_token"]
    assert kept is not None and kept.access_token == "keep", "other accounts untouched"


async def test_an_order_accepted_then_rejected_is_journaled_with_the_brokers_code(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any
) -> None:
    daemon = daemons(make_config(ACCOUNTS, RULES))
    started = await daemon.start()
    sim.reject_after_accept_next(1, "NOT_ENOUGH_MONEY", account_id=ids["follower-hedged"])
    sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000)
    assert started.replicator is not None and started.store is not None
    await eventually(lambda: started.replicator.stats.rejected == 1, 10, "rejected")
    (entry,) = started.store.journal(ids["follower-hedged"])
    assert (entry.outcome, entry.detail) == ("rejected", "NOT_ENOUGH_MONEY")
    assert sim.broker.positions(ids["follower-hedged"]) == []

"""Token lifecycle in a running daemon: a lost refresh reply recovered when the server never
acted on it; otherwise only the accounts of that pair need re-authorisation (log, STATUS=,
`cmamd accounts`) while the others keep copying; `cmamd auth` during the run brings them back.
"""

from __future__ import annotations

import copy
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from e2e.kit import InProcessDaemon, connect_master, daemon_config, eventually, write_yaml

from cmamd.accounts.model import Side
from cmamd.accounts.timing import SessionTiming
from cmamd.daemon.timing import DaemonTiming
from cmamd.sim import SimConfig, SimServer
from cmamd.sim.defaults import default_config_data
from cmamd.state.shared_tokens import read_view

from .kit import CmamdProcess, browser_grant, run_cmamd

REFRESH_TOKEN_REQ = 2173
RULES = [
    {
        "name": "main",
        "source": "master",
        "destinations": [
            {"account": "follower-hedged", "volume": {"mode": "multiplier", "value": 1}}
        ],
    }
]


def _three_ctids() -> list[dict[str, Any]]:
    """follower-suffix and follower-netted get a cTID (a token pair) of their own."""
    ctids: list[dict[str, Any]] = copy.deepcopy(default_config_data()["ctids"])
    hedged, suffix, netted = ctids[1]["accounts"]
    ctids[1]["accounts"] = [hedged]
    ctids.append({"name": "others", "accounts": [suffix, netted]})
    return ctids


@pytest.fixture
async def sim(redirect_uri: str) -> AsyncIterator[SimServer]:
    config = SimConfig.default(
        ctids=_three_ctids(), redirect_uris=[redirect_uri], grant_ctid="others"
    )
    async with SimServer(config) as server:
        yield server


@pytest.fixture
def reauth_watch_s() -> float:
    """How often an account waiting for `cmamd auth` looks at the store (a test may say)."""
    return 0.2


@pytest.fixture
async def running(
    sim: SimServer, tmp_path: Path, redirect_uri: str, reauth_watch_s: float
) -> AsyncIterator[tuple[InProcessDaemon, Path]]:
    data = daemon_config(
        sim,
        tmp_path / "state",
        tmp_path / "client_secret",
        ["master", "follower-hedged", "follower-suffix"],
        RULES,
        api={"redirect_uri": redirect_uri},
    )
    described = sim.describe()
    data["api"]["auth_url"] = described["auth_url"]
    data["api"]["token_url"] = described["token_url"]
    config = write_yaml(tmp_path / "config.yaml", data)
    timing = DaemonTiming(session=SessionTiming(reauth_watch_s=reauth_watch_s))
    daemon = InProcessDaemon(config, timing=timing)
    await daemon.start()
    yield daemon, config
    await daemon.stop()


def _id(sim: SimServer, name: str) -> int:
    return sim.config.account(name).account_id


async def test_a_refresh_lost_before_the_server_acted_is_recovered(
    sim: SimServer, running: tuple[InProcessDaemon, Path]
) -> None:
    daemon, _ = running
    assert daemon.daemon is not None
    suffix = daemon.daemon.sessions["follower-suffix"]
    await eventually(suffix.ready.is_set, what="follower-suffix ready")
    before = sim.tokens.by_name("others").refresh_token
    sim.lose_next_requests(1, [REFRESH_TOKEN_REQ])
    sim.invalidate_token(_id(sim, "follower-suffix"))  # forces a refresh
    await eventually(
        lambda: sim.tokens.by_name("others").refresh_token != before, 15, "pair rotated"
    )
    await eventually(suffix.ready.is_set, 15, "follower-suffix ready again")
    assert suffix.needs_reauth is None
    refreshes = [r for r in sim.record if r.payload_type == REFRESH_TOKEN_REQ]
    assert len(refreshes) == 2  # the lost one, then the held refresh token once more


# the watch would take an hour on "a reload": only SIGHUP can bring the account back
@pytest.mark.parametrize(
    ("picked_up_by", "reauth_watch_s"), [("the store watch", 0.2), ("a reload", 3600)]
)
async def test_a_lost_refresh_reply_stops_only_that_pair_until_cmamd_auth(
    sim: SimServer,
    running: tuple[InProcessDaemon, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    picked_up_by: str,
) -> None:
    daemon, config = running
    assert daemon.daemon is not None
    seen_secrets = set(_tokens(sim))
    sessions = daemon.daemon.sessions
    await eventually(sessions["follower-suffix"].ready.is_set, what="follower-suffix ready")
    sim.swallow_next(1, [REFRESH_TOKEN_REQ])  # acted on (pair rotated), the answer lost
    sim.invalidate_token(_id(sim, "follower-suffix"))
    await eventually(
        lambda: sessions["follower-suffix"].status == "needs re-authorisation", 20, "marked"
    )
    assert "NEEDS RE-AUTHORISATION (cmamd auth): follower-suffix" in daemon.daemon.status_line()
    assert read_view(tmp_path / "state").needs_reauth.keys() == {_id(sim, "follower-suffix")}

    listed = await run_cmamd("accounts", "--config", str(config), "--json")
    assert listed.code == 1, listed.text
    report = {a["name"]: a for a in json.loads(listed.out)["accounts"]}
    assert report["follower-suffix"]["needs_reauthorisation"]
    assert report["follower-hedged"]["needs_reauthorisation"] is None

    # the others keep copying
    master = await connect_master(sim)
    try:
        await master.market("EURUSD", Side.BUY, "0.10")
        await daemon.settle()
        assert len(sim.broker.positions(_id(sim, "follower-hedged"))) == 1
    finally:
        await master.close_connection()

    # `cmamd auth` while the daemon runs: the account comes back without a restart
    process = await CmamdProcess.start("auth", "--config", str(config), "--no-listen")
    process.paste(await browser_grant(await process.auth_url()))
    run = await process.finish()
    assert run.code == 0, run.text
    if picked_up_by == "a reload":
        daemon.daemon._on_signal(signal.SIGHUP)  # what `systemctl reload cmamd` sends
    await eventually(sessions["follower-suffix"].ready.is_set, 15, "follower-suffix back")
    assert "NEEDS" not in daemon.daemon.status_line()
    assert read_view(tmp_path / "state").needs_reauth == {}
    seen_secrets |= {sim.config.client_secret, *_tokens(sim)}
    # the records before redaction: no token was ever handed to a log call
    daemon_log = caplog.text
    assert "account needs re-authorisation" in daemon_log and "follower-suffix" in daemon_log
    for secret in seen_secrets:
        assert secret not in run.text + listed.text + daemon_log


def _tokens(sim: SimServer) -> list[str]:
    return [
        t
        for name in ("masters", "followers", "others")
        for t in (sim.tokens.by_name(name).access_token, sim.tokens.by_name(name).refresh_token)
        if t
    ]

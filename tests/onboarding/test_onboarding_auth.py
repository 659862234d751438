"""`cmamd auth` end to end against the simulator: listener path, paste path, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from polling import wait_until

from cmamd.sim import SimServer
from cmamd.state.shared_tokens import read_view, tokens_for

from .kit import CmamdProcess, Run, browser_follow, browser_grant, onboarding_config, run_cmamd

FOLLOWERS = {3_202_001, 3_202_002, 3_202_003}


def _secrets(sim: SimServer) -> list[str]:
    described = sim.describe()
    values = [described["client_secret"]]
    for account in described["accounts"]:
        values += [account["access_token"], account["refresh_token"]]
    return values


async def test_auth_through_the_listener_stores_the_pair(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)
    process = await CmamdProcess.start("auth", "--config", str(config))
    url = await process.auth_url()
    location = await browser_grant(url)
    status, page = await browser_follow(location)
    assert status == 200 and b"close this tab" in page
    run = await process.finish()
    assert run.code == 0, run.text
    ctid = sim.tokens.by_name("followers")
    for account_id in FOLLOWERS:
        stored = tokens_for(tmp_path / "state", account_id)
        assert stored is not None and stored.refresh_token == ctid.refresh_token
    block = yaml.safe_load(
        run.out.split("names are yours to change):", 1)[1].split("\nA running")[0]
    )
    assert {a["account_id"] for a in block["accounts"]} == FOLLOWERS
    assert "systemctl reload" in run.out
    for secret in _secrets(sim):
        assert secret not in run.text


async def test_auth_by_pasting_the_redirected_url(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)
    process = await CmamdProcess.start("auth", "--config", str(config), "--no-listen")
    url = await process.auth_url()
    location = await browser_grant(url)
    process.paste(location)
    run = await process.finish()
    assert run.code == 0, run.text
    assert set(read_view(tmp_path / "state").tokens) == FOLLOWERS
    for secret in _secrets(sim):
        assert secret not in run.text


async def _auth_by_paste(config: Path) -> Run:
    process = await CmamdProcess.start("auth", "--config", str(config), "--no-listen")
    process.paste(await browser_grant(await process.auth_url()))
    return await process.finish()


async def test_a_regrant_leaving_accounts_out_warns_about_them(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    accounts = [
        {"name": "hedged", "account_id": 3_202_001, "live": False},
        {"name": "suffix", "account_id": 3_202_002, "live": False},
        {"name": "elsewhere", "account_id": 3_101_001, "live": False},  # another cTrader ID
    ]
    config = onboarding_config(sim, tmp_path, redirect_uri, accounts)
    first = await _auth_by_paste(config)
    assert first.code == 0, first.text
    assert "warning: account 'elsewhere' (3101001) is configured but not in this grant" in (
        first.out
    )
    assert "'suffix'" not in first.out.split("Accounts block")[0].split("Tokens stored")[1]
    sim.oauth.settings.grant_accounts = frozenset({3_202_001})  # suffix not selected again
    second = await _auth_by_paste(config)
    assert second.code == 0, second.text
    assert (
        "warning: account 'suffix' (3202002) was granted by this cTrader ID before but is not "
        "in the new grant"
    ) in second.out
    assert "select every account" in second.out
    assert "'elsewhere'" in second.out  # still without a token: still named


async def test_cmamd_accounts_reports_the_store(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    accounts = [
        {"name": "hedged", "account_id": 3_202_001, "live": False},
        {"name": "nobody", "account_id": 999, "live": False},
    ]
    config = onboarding_config(sim, tmp_path, redirect_uri, accounts)
    assert (await _auth_by_paste(config)).code == 0
    table = await run_cmamd("accounts", "--config", str(config), "--remote")
    assert table.code == 1, table.text  # "nobody" has no token
    lines = {line.split()[0]: line for line in table.out.splitlines()[1:] if line.strip()}
    assert (
        "3202001  demo  yes" in lines["hedged"]
        and "Demo Markets login 7700201, trading" in (lines["hedged"])
    )
    assert "NEEDS RE-AUTHORISATION (no token): run `cmamd auth`" in lines["nobody"]
    as_json = await run_cmamd("accounts", "--config", str(config), "--json")
    report = {a["name"]: a for a in json.loads(as_json.out)["accounts"]}
    assert report["hedged"]["token"] is True and report["hedged"]["access_expires_at"]
    assert report["nobody"]["token"] is False
    for secret in _secrets(sim):
        assert secret not in table.text + as_json.text


async def test_sim_describe_lists_the_oauth_endpoints(tmp_path: Path) -> None:
    import asyncio
    import os
    import signal
    import sys

    from .kit import ROOT

    describe = tmp_path / "sim.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cmamd",
        "sim",
        "--port",
        "0",
        "--describe",
        str(describe),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await wait_until(describe.exists, 20.0, 0.05, what="the simulator's description")
        data = json.loads(describe.read_text())
        assert data["auth_url"].endswith("/apps/auth")
        assert data["token_url"].endswith("/apps/token")
        assert data["redirect_uris"] == ["http://127.0.0.1:8765/callback"]
        status, _, _ = await asyncio.to_thread(_get_status, data["token_url"])
        assert status == 200  # answers (with errorCode: no parameters)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await proc.communicate()
    assert b"token_url" in out and b"auth_url" in out


def _get_status(url: str) -> tuple[int, None, None]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, None, None

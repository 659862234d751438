"""`cmamd auth` end to end against the simulator: listener path, paste path, bad input."""

from __future__ import annotations

from pathlib import Path

import yaml

from cmamd.sim import SimServer
from cmamd.state.shared_tokens import read_view, tokens_for

from .kit import CmamdProcess, browser_follow, browser_grant, onboarding_config

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

"""The README's "Connect your accounts" section, followed as written against the simulator:
check-config --connect, `cmamd auth` for each cTrader ID (listener, then paste), the pasted
accounts block, `cmamd accounts`, and `cmamd run` copying with no token in the YAML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from e2e.kit import DaemonProcess, eventually

from cmamd.accounts.model import Side
from cmamd.demo.master import MasterTrader
from cmamd.sim import SimServer

from .kit import ROOT, CmamdProcess, Run, browser_follow, browser_grant, run_cmamd

CONFIG = "/etc/cmamd/config.yaml"


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Connect your accounts")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(section: str, language: str) -> list[str]:
    return [
        re.sub(r"^ {3}", "", body, flags=re.M)
        for body in re.findall(rf"```{language}\n(.*?)```", section, re.S)
    ]


def commands(section: str) -> list[str]:
    lines = [
        line.split("#", 1)[0].strip()
        for block in blocks(section, "sh")
        for line in block.splitlines()
    ]
    return [line for line in lines if line]


def test_the_section_lists_the_commands_this_test_runs() -> None:
    assert commands(readme_section()) == [
        f"cmamd check-config --connect {CONFIG}",
        f"cmamd auth --config {CONFIG}",
        f"cmamd accounts --config {CONFIG}",
        f"cmamd check-config {CONFIG}",
        "systemctl reload cmamd",
        f"cmamd run --config {CONFIG}",
    ]


def _argv(command: str, config: Path) -> list[str]:
    return command.replace(CONFIG, str(config)).split()[1:]


def _pasted_block(run: Run) -> list[dict[str, Any]]:
    text = run.out.split("names are yours to change):", 1)[1].split("\nA running daemon")[0]
    accounts: list[dict[str, Any]] = yaml.safe_load(text)["accounts"]
    return accounts


async def test_connect_your_accounts_as_the_readme_says(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    section = readme_section()
    steps = iter(commands(section))
    described = sim.describe()
    config = tmp_path / "config.yaml"
    secret = tmp_path / "client_secret"
    secret.write_text(described["client_secret"] + "\n")
    secret.chmod(0o600)
    # step 2: the README's YAML, with the simulator's addresses where Spotware's would be
    data = yaml.safe_load(blocks(section, "yaml")[0])
    url = urlsplit(described["url"])
    data["api"].update(
        client_id=described["client_id"],
        client_secret_file=str(secret),
        redirect_uri=redirect_uri,
        auth_url=described["auth_url"],
        token_url=described["token_url"],
        demo_host=url.hostname,
        port=url.port,
        tls=False,
    )
    data["state_dir"] = str(tmp_path / "state")
    data["logging"] = {"level": "info", "format": "json"}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    outputs: list[str] = []

    checked = await run_cmamd(*_argv(next(steps), config))
    outputs.append(checked.text)
    assert checked.code == 0, checked.text
    assert f"connect demo: {described['url']}: ok" in checked.out

    auth = next(steps)
    sim.oauth.settings.grant_ctid = "masters"  # the first cTrader ID: the listener catches it
    process = await CmamdProcess.start(*_argv(auth, config))
    status, _ = await browser_follow(await browser_grant(await process.auth_url()))
    assert status == 200
    first = await process.finish()
    sim.oauth.settings.grant_ctid = "followers"  # the second: pasted, the listener running
    process = await CmamdProcess.start(*_argv(auth, config))
    process.paste(await browser_grant(await process.auth_url()))
    second = await process.finish()
    for run in (first, second):
        outputs.append(run.text)
        assert run.code == 0, run.text
    accounts = _pasted_block(first) + _pasted_block(second)
    by_id = {a["account_id"]: a["name"] for a in accounts}
    data["accounts"] = accounts
    data["copy"] = [
        {
            "name": "main",
            "source": by_id[sim.config.account("master").account_id],
            "destinations": [
                {
                    "account": by_id[sim.config.account("follower-hedged").account_id],
                    "volume": {"mode": "multiplier", "value": 2},
                }
            ],
        }
    ]
    config.write_text(yaml.safe_dump(data, sort_keys=False))

    listed = await run_cmamd(*_argv(next(steps), config))
    outputs.append(listed.text)
    assert listed.code == 0, listed.text
    assert listed.out.count("  yes  ") == 5 and "NEEDS" not in listed.out

    checked = await run_cmamd(*_argv(next(steps), config))
    outputs.append(checked.text)
    assert checked.code == 0, checked.text
    assert all("token" not in key for a in data["accounts"] for key in a)

    assert next(steps) == "systemctl reload cmamd"  # systemd's part: `cmamd run` below
    daemon = DaemonProcess(config, {}, tmp_path / "daemon.log")
    daemon.start()
    master: MasterTrader | None = None
    try:
        await eventually(
            lambda: any(e.get("event") == "ready" for e in daemon.log_events()), 30, "ready"
        )
        described = sim.describe()
        account = next(a for a in described["accounts"] if a["name"] == "master")
        master = await MasterTrader.connect(
            sim.url,
            described["client_id"],
            described["client_secret"],
            account["account_id"],
            account["access_token"],
        )
        await master.market("EURUSD", Side.BUY, "0.10")
        follower = sim.config.account("follower-hedged").account_id
        await eventually(lambda: len(sim.broker.positions(follower)) == 1, 15, "copied")
        assert sim.broker.positions(follower)[0].volume == 2 * master.volume("EURUSD", "0.10")
    finally:
        if master is not None:
            await master.close_connection()
        daemon.kill()
    outputs += [daemon.log_text(), config.read_text()]
    secrets = [described["client_secret"]]
    for ctid in ("masters", "followers"):
        pair = sim.tokens.by_name(ctid)
        secrets += [t for t in (pair.access_token, pair.refresh_token) if t]
    for output in outputs:
        for value in secrets:
            assert value not in output

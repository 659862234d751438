"""``cmamd accounts``: the configured accounts and what the state store knows of them.

Token present, access-token expiry, last update of the pair (a refresh or `cmamd auth`),
and accounts that need a new authorisation. ``--remote`` also asks the server what each
stored token grants (broker, login, live/demo, scope). Read-only: safe while the daemon runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from cmamd.config.default_path import add_config_option
from cmamd.config.models import AccountConfig, Config
from cmamd.onboarding import remote, setup
from cmamd.onboarding.errors import OnboardingError
from cmamd.state.errors import StateError
from cmamd.state.shared_tokens import StoreView, read_view, tokens_for

CONNECT_TIMEOUT_S = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--remote", action="store_true", help="also ask the server what each stored token grants"
    )


def main(args: argparse.Namespace) -> int:
    return run(args.config, as_json=args.json, remote_check=args.remote)


@dataclass
class AccountReport:
    name: str
    account_id: int
    environment: str
    enabled: bool
    token: bool
    access_expires_at: str | None
    last_refresh: str | None
    needs_reauthorisation: str | None  # why, when it does
    bootstrap_in_config: bool
    broker: str | None = None
    login: int | None = None
    live: bool | None = None
    scope: str | None = None
    granted: bool | None = None  # --remote: does the stored token still grant the account


def run(
    config_path: Path,
    *,
    as_json: bool = False,
    remote_check: bool = False,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    try:
        setup.quiet_logging()
        loaded = setup.load(config_path)
        setup.quiet_logging(loaded.config)
        view = read_view(loaded.config.state_dir)
        reports = [_report(a, view) for a in loaded.accounts]
        problems: list[str] = []
        if remote_check:
            problems = asyncio.run(_remote(loaded.config, reports))
    except (OnboardingError, StateError) as exc:
        print(f"cmamd accounts: {exc}", file=sys.stderr)
        return 1
    if as_json:
        json.dump({"accounts": [asdict(r) for r in reports], "problems": problems}, out, indent=2)
        out.write("\n")
    else:
        _print_table(reports, problems, out)
    return 1 if any(r.needs_reauthorisation for r in reports if r.enabled) or problems else 0


def _report(account: AccountConfig, view: StoreView) -> AccountReport:
    row = view.tokens.get(account.account_id)
    facts = view.info.get(account.account_id, {})
    has_token = row is not None and (row.has_access or row.has_refresh)
    reason = view.needs_reauth.get(account.account_id)
    bootstrap = bool(account.initial_access_token or account.initial_refresh_token)
    if reason is None and not has_token and not bootstrap:
        reason = "no token"
    return AccountReport(
        name=account.name,
        account_id=account.account_id,
        environment=account.environment,
        enabled=account.enabled,
        token=has_token,
        access_expires_at=_iso(row.expires_at_ms) if row and row.expires_at_ms else None,
        last_refresh=_iso(row.updated_ms) if row else None,
        needs_reauthorisation=reason,
        bootstrap_in_config=bootstrap,
        # as `cmamd auth` last saw them; --remote asks the server again
        broker=_str(facts.get("broker")),
        login=_int(facts.get("login")),
        live=facts.get("live") if isinstance(facts.get("live"), bool) else None,
        scope=_str(facts.get("scope")),
    )


async def _remote(config: Config, reports: list[AccountReport]) -> list[str]:
    """Ask, once per distinct stored token and environment, what the token grants."""
    problems = []
    groups: dict[tuple[bool, str], list[AccountReport]] = {}
    for report in reports:
        if not report.token:
            continue
        stored = tokens_for(config.state_dir, report.account_id)
        if stored is None or not stored.access_token:
            continue
        groups.setdefault((report.environment == "live", stored.access_token), []).append(report)
    for (live, access_token), members in groups.items():
        try:
            grant = await remote.list_granted(config.api, live, access_token, CONNECT_TIMEOUT_S)
        except OnboardingError as exc:
            problems.append(f"{', '.join(r.name for r in members)}: {exc}")
            for report in members:
                report.granted = False
            continue
        by_id = {a.account_id: a for a in grant.accounts}
        for report in members:
            found = by_id.get(report.account_id)
            report.granted = found is not None
            report.scope = grant.scope
            if found is not None:
                report.broker, report.login, report.live = found.broker, found.login, found.live
    return problems


def _print_table(reports: list[AccountReport], problems: list[str], out: TextIO) -> None:
    if not reports:
        print("no accounts configured yet: run `cmamd auth` and paste its accounts block", file=out)
    width = max([len(r.name) for r in reports] + [4])
    print(
        f"{'name':<{width}}  {'account_id':>10}  env   token  expires (UTC)     "
        "last refresh (UTC)  state",
        file=out,
    )
    for r in reports:
        state = "ok" if r.token else "no token"
        if r.bootstrap_in_config and not r.token:
            state = "bootstrap token in config"
        if r.needs_reauthorisation:
            state = f"NEEDS RE-AUTHORISATION ({r.needs_reauthorisation}): run `cmamd auth`"
        if not r.enabled:
            state += " (disabled)"
        if r.granted is False:
            state += "; NOT granted by its token"
        elif r.broker is not None:
            state += f"; {r.broker} login {r.login}, {r.scope}"
        print(
            f"{r.name:<{width}}  {r.account_id:>10}  {r.environment}  "
            f"{'yes' if r.token else 'no':<5}  {(r.access_expires_at or '-'):<16}  "
            f"{(r.last_refresh or '-'):<18}  {state}",
            file=out,
        )
    for problem in problems:
        print(f"problem: {problem}", file=out)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


__all__ = ["AccountReport", "run"]

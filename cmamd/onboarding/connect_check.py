"""``cmamd check-config --connect``: reach each environment the config uses and authenticate
the application there, as the "connection dialog" of desktop copiers does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from cmamd.config.models import Config
from cmamd.onboarding import remote, setup
from cmamd.onboarding.errors import OnboardingError


def environments(config: Config) -> list[bool]:
    """The environments (live?) of the enabled accounts; demo when there are none."""
    used = sorted({account.live for account in config.enabled_accounts})
    return used or [False]


def check_connections(config: Config, out: TextIO, timeout_s: float | None = None) -> bool:
    """One line per environment: endpoint, time to connect and authenticate, ok or why not."""
    setup.quiet_logging(config)
    return asyncio.run(_check(config, out, timeout_s or config.api.request_timeout_s * 2))


async def _check(config: Config, out: TextIO, timeout_s: float) -> bool:
    ok = True
    for live in environments(config):
        env = remote.environment(live)
        url = config.api.url_for(live)
        try:
            elapsed = await remote.check_application(config.api, live, timeout_s)
        except OnboardingError as exc:
            print(f"connect {env}: {url}: FAILED: {_without_url(str(exc), url)}", file=out)
            ok = False
            continue
        print(
            f"connect {env}: {url}: ok (connected and application authenticated "
            f"in {elapsed * 1000:.0f} ms)",
            file=out,
        )
    return ok


def check_before_accounts(path: Path, out: TextIO, err: TextIO) -> int | None:
    """For a file without ``accounts:`` yet: check its API part and connect; None if the
    file has accounts (its problems are then the ordinary check's to report)."""
    try:
        loaded = setup.load(path)
    except OnboardingError:
        return None
    if loaded.has_accounts:
        return None
    print(
        f"{path}: no accounts yet; the api part is valid (`cmamd auth` prints the accounts "
        "block to add)",
        file=out,
    )
    if not check_connections(loaded.config, out):
        print(f"{path}: connection check FAILED", file=err)
        return 1
    return 0


def _without_url(message: str, url: str) -> str:
    prefix = f"{url}: "
    return message[len(prefix) :] if message.startswith(prefix) else message

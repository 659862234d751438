"""``cmamd auth``: grant cmamd access to cTrader accounts and store their token pair.

Prints the authorisation URL; the redirect comes back through a one-shot local listener
(when the redirect URI is a loopback address) or is pasted at the prompt (the whole URL or
just its code). The code is exchanged at the token endpoint, the accounts the token grants
are listed, the pair is stored for them in the state store (also while the daemon runs),
and a ready-to-paste ``accounts:`` block is printed. Nothing is stored unless every step
before it succeeded; no token is printed (the access token only masked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TextIO

from cmamd.config.default_path import add_config_option
from cmamd.config.models import AccountConfig
from cmamd.onboarding import grant_report, redirect, remote, setup, token_client
from cmamd.onboarding.errors import OnboardingError
from cmamd.onboarding.listener import RedirectListener
from cmamd.state.errors import StateError
from cmamd.state.records import StoredTokens
from cmamd.state.shared_tokens import store_pairs, tokens_for

DEFAULT_WAIT_S = 600.0
CONNECT_TIMEOUT_S = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument(
        "--scope",
        choices=redirect.SCOPES,
        default="trading",
        help="trading (copying needs it) or accounts (view only); default: trading",
    )
    parser.add_argument(
        "--env",
        choices=("demo", "live"),
        help="server to list the granted accounts on (default: that of the configured accounts)",
    )
    parser.add_argument(
        "--no-listen",
        action="store_true",
        help="do not listen on the redirect URI's port; paste the redirected URL instead",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        help="seconds to wait for the redirect (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    return run(args.config, args.scope, args.env, not args.no_listen, args.wait)


def run(
    config_path: Path,
    scope: str,
    env: str | None,
    listen: bool,
    wait_s: float,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    try:
        asyncio.run(_auth(config_path, scope, env, listen, wait_s, stdin or sys.stdin, out))
    except OnboardingError as exc:
        print(f"cmamd auth: {exc}", file=sys.stderr)
        print("cmamd auth: nothing was stored", file=sys.stderr)
        return 1
    except StateError as exc:
        print(f"cmamd auth: cannot store the tokens: {exc}", file=sys.stderr)
        return 1
    return 0


async def _auth(
    config_path: Path,
    scope: str,
    env: str | None,
    listen: bool,
    wait_s: float,
    stdin: TextIO,
    out: TextIO,
) -> None:
    setup.quiet_logging()
    loaded = setup.load(config_path)
    config = loaded.config
    setup.quiet_logging(config)
    api = config.api
    live = _environment(env, loaded)
    state = secrets.token_urlsafe(16)
    url = redirect.authorisation_url(api.auth_url, api.client_id, api.redirect_uri, scope, state)
    address = redirect.loopback_listen_address(api.redirect_uri) if listen else None
    listener = RedirectListener(address) if address is not None else None
    if listener is not None:
        await listener.start()
    try:
        print("Open this URL in a browser, log in with your cTrader ID and grant access:", file=out)
        print(f"\n  {url}\n", file=out)
        if listener is not None:
            print(
                f"Waiting for the redirect on {api.redirect_uri} ... or paste the redirected "
                "URL (or just its code) here and press Enter.",
                file=out,
            )
        else:
            print(
                "After granting, the browser goes to the redirect URI (the page may not load): "
                "paste that whole URL (or just its code) here and press Enter.",
                file=out,
            )
        print("The code expires about a minute after the grant: paste it promptly.", file=out)
        print(
            "If the page reports an invalid redirect URI, api.redirect_uri must be exactly "
            "the redirect URI registered for the application.",
            file=out,
        )
        out.flush()
        code = await _wait_for_code(listener, stdin, state, wait_s, api.redirect_uri)
    finally:
        if listener is not None:
            await listener.stop()
    pair = await token_client.exchange_code(
        api.token_url,
        client_id=api.client_id,
        client_secret=api.resolved_client_secret.get_secret_value(),
        code=code,
        redirect_uri=api.redirect_uri,
        verify=api.ssl_context() or True,
        timeout_s=api.request_timeout_s,
    )
    print(f"Token received (access token {token_client.mask(pair.access_token)}).", file=out)
    grant = await remote.list_granted(api, live, pair.access_token, CONNECT_TIMEOUT_S)
    if not grant.accounts:
        raise OnboardingError(
            "the grant covers no account: on the grant page, select the accounts cmamd may "
            "use, then run `cmamd auth` again"
        )
    configured = loaded.accounts
    ids = {a.account_id for a in grant.accounts} | {a.account_id for a in configured}
    previous = {}
    for account_id in ids:
        held = tokens_for(config.state_dir, account_id)
        if held is not None:
            previous[account_id] = held.refresh_token
    now_ms = int(time.time() * 1000)
    stored = StoredTokens(
        pair.access_token, pair.refresh_token, now_ms + pair.expires_in_s * 1000, now_ms
    )
    try:
        store_pairs(
            config.state_dir,
            {a.account_id: stored for a in grant.accounts},
            {
                a.account_id: {
                    "broker": a.broker,
                    "login": a.login,
                    "live": a.live,
                    "scope": grant.scope,
                }
                for a in grant.accounts
            },
        )
    except OSError as exc:
        raise OnboardingError(
            f"cannot write the state store in {config.state_dir} ({exc.strerror}): run "
            "`cmamd auth` as the user the daemon runs as (see docs/operations.md)"
        ) from None
    _report(out, grant, configured, previous, config.state_dir, scope)


async def _wait_for_code(
    listener: RedirectListener | None,
    stdin: TextIO,
    state: str,
    wait_s: float,
    redirect_uri: str,
) -> str:
    pasted = _read_line_in_background(stdin)
    waiters: set[asyncio.Future[str | None]] = {pasted}
    if listener is not None:
        waiters.add(asyncio.ensure_future(_optional(listener.query())))
    deadline = time.monotonic() + wait_s
    try:
        while waiters:
            done, waiters = await asyncio.wait(
                waiters,
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                break
            for future in done:
                text = future.result()
                if text is None:  # stdin closed: only the listener can still answer
                    continue
                if future is pasted:
                    return redirect.code_from_paste(text, state)
                return redirect.code_from_query(text, state)
    finally:
        for future in waiters:
            future.cancel()
    raise OnboardingError(
        f"no redirect arrived and nothing was pasted within {wait_s:g} s: if the browser "
        f"reported an invalid redirect URI, set api.redirect_uri ({redirect_uri}) to exactly "
        "the one registered for the application; otherwise run `cmamd auth` again and paste "
        "the redirected URL"
    )


async def _optional(query: Awaitable[str]) -> str | None:
    return await query


def _read_line_in_background(stdin: TextIO) -> asyncio.Future[str | None]:
    """The next non-empty line of ``stdin`` (None at its end), read by a daemon thread.

    A thread, not the loop's executor: a line that never comes must not keep the process
    from exiting once the listener has answered.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def deliver(value: str | None) -> None:
        if not future.done():
            future.set_result(value)

    def read() -> None:
        try:
            for line in stdin:
                if line.strip():
                    loop.call_soon_threadsafe(deliver, line)
                    return
        except (OSError, ValueError):
            pass
        # RuntimeError: the loop is gone, nobody waits any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, None)

    threading.Thread(target=read, name="paste-reader", daemon=True).start()
    return future


def _environment(env: str | None, loaded: setup.OnboardingConfig) -> bool:
    if env is not None:
        return env == "live"
    kinds = {a.live for a in loaded.accounts}
    return kinds == {True}


def _report(
    out: TextIO,
    grant: remote.Grant,
    configured: list[AccountConfig],
    previous: dict[int, str],
    state_dir: Path,
    scope: str,
) -> None:
    accounts = configured
    print(f"\nThe grant ({grant.scope} scope) covers {len(grant.accounts)} account(s):", file=out)
    for line in grant_report.account_table(grant, accounts):
        print(f"  {line}", file=out)
    print(f"\nTokens stored in {state_dir}.", file=out)
    if grant.scope != scope or grant.scope != "trading":
        print(
            "warning: this grant is view-only (accounts scope): copying needs `--scope trading`",
            file=out,
        )
    for warning in grant_report.missing_from_grant(grant, accounts, previous):
        print(warning, file=out)
    print("\nAccounts block for the config (names are yours to change):\n", file=out)
    out.write(grant_report.accounts_block(grant, accounts))
    print(
        "\nA running daemon picks the new tokens up on the next `systemctl reload cmamd` "
        "(accounts waiting for a new authorisation also retry by themselves within a minute).",
        file=out,
    )

"""Bringing an account back after it was dropped, and holding it while only `cmamd auth`
can (its token pair refused).

A lost link, an invalidated token or a server's disconnect start one recovery at a time:
re-authorise and reconcile, retried with a growing pause. A refusal ends it: the account
fails (account or application refused), or waits for a new token pair (the pair refused),
which a store watch or a reload brings; the other accounts keep copying meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from structlog.stdlib import BoundLogger

from cmamd.accounts.authorisation import (
    RETRYABLE_OR_REFUSED,
    Authoriser,
    is_permanent,
    is_token_refusal,
)
from cmamd.accounts.startup import startup_for
from cmamd.accounts.status import SessionStatus
from cmamd.accounts.supervision import RetryPacing, Spawn
from cmamd.accounts.timing import PRODUCTION, SessionTiming
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.connection.client import OpenApiConnection


class StatusHolder(Protocol):
    account_id: int
    status: SessionStatus
    error: str | None
    ready: asyncio.Event


class Recovery:
    def __init__(
        self,
        session: StatusHolder,
        *,
        authoriser: Authoriser,
        tokens: TokenKeeper,
        bring_up: Callable[[], Awaitable[None]],
        resync: Callable[[], Awaitable[None]],
        spawn: Spawn,
        log: BoundLogger,
        timing: SessionTiming = PRODUCTION,
    ) -> None:
        self._session = session
        self._timing = timing
        self._account_id = session.account_id
        self._auth = authoriser
        self._tokens = tokens
        self._bring_up = bring_up
        self._resync = resync
        self._spawn = spawn
        self._log = log
        self._running: asyncio.Task[Any] | None = None
        self.needs_reauth: str | None = None  # why the account waits for `cmamd auth`
        self._reauth_watch: asyncio.Task[Any] | None = None
        self._refused_refresh: str | None = None  # the pair a new one must differ from
        self.bringing_up = 0
        """>0 while the session's start-up chain runs (it authorises on a new link itself)."""

    def start(self, reason: str) -> None:
        # One recovery at a time: a token rotation sends several events for one cause.
        if self._running is None or self._running.done():
            self._running = self._spawn(self._recover(reason))

    async def _recover(self, reason: str) -> None:
        """Re-authorise and reconcile after the account was dropped or never came up."""
        session = self._session
        session.ready.clear()
        session.status = SessionStatus.REAUTHORISING
        self._log.warning("account not available, re-authorising", reason=reason)
        pacing = RetryPacing()
        while True:
            try:
                await self._bring_up()
                if self.needs_reauth is None:
                    self._tokens.clear_needs_reauth(self._account_id)
                return
            except Exception as exc:
                if is_permanent(exc):
                    self.refused(f"cannot authorise: {exc}", exc)
                    return
                self._auth.note_if_unauthorised(exc)
                delay = pacing.next_delay()
                session.error = f"retrying: {exc!r}"
                if isinstance(exc, RETRYABLE_OR_REFUSED):
                    self._log.warning("authorisation failed, retrying", error=str(exc), in_s=delay)
                else:  # not a failure we know: say so loudly, and still come back
                    self._log.error(
                        "account start-up failed unexpectedly, retrying",
                        error=repr(exc),
                        in_s=delay,
                        exc_info=exc,
                    )
                await asyncio.sleep(delay)

    async def after_reconnect(self, connection: OpenApiConnection) -> None:
        """The connection's session hook: runs inside its reconnect, before queued requests
        are released."""
        session = self._session
        session.ready.clear()
        session.status = SessionStatus.REAUTHORISING
        self._auth.authorised = False  # a new link: the server knows no account on it yet
        if self.bringing_up:
            # The start-up chain authorises and reconciles on this link by itself (its
            # requests are released after the hooks). Doing it here too sent both twice,
            # and a hook waiting for an admission place the chain holds stalled every hook.
            return
        try:
            async with startup_for(connection).admitted():
                await self._auth.account_auth()
        except Exception as exc:
            self.start(f"re-auth after reconnect failed: {exc!r}")
            return
        self._spawn(self._resync_logged(connection))

    async def _resync_logged(self, connection: OpenApiConnection) -> None:
        try:
            async with startup_for(connection).admitted():
                await self._resync()
        except Exception as exc:
            self._log.error("reconcile after reconnect failed", error=str(exc))
            await self._recover(f"reconcile failed: {exc}")

    def retry_if_failed(self) -> bool:
        """Try a failed account again (SIGHUP); True when a retry was started."""
        session = self._session
        if self.needs_reauth is not None and not session.ready.is_set():
            self.retry_authorisation("retry requested")
            return True
        if session.status is not SessionStatus.FAILED:
            return False
        self.start(f"retry requested after: {session.error}")
        return True

    def refused(self, reason: str, exc: BaseException) -> None:
        if is_token_refusal(exc):
            self.needs_reauthorisation(reason, down=True)
        else:
            self.fail(reason)

    def fail(self, reason: str) -> None:
        session = self._session
        session.status = SessionStatus.FAILED
        session.error = reason
        session.ready.clear()
        self._log.error("account unavailable", reason=reason)

    def needs_reauthorisation(self, reason: str, *, down: bool) -> None:
        """Only this account (and those sharing its pair) stop; the others keep copying.

        The mark is persisted for `cmamd accounts`; a new pair in the store (`cmamd auth`,
        also while the daemon runs) or a reload brings the account back.
        """
        self.needs_reauth = reason
        if down:
            session = self._session
            session.status = SessionStatus.NEEDS_REAUTH
            session.error = reason
            session.ready.clear()
        try:
            self._refused_refresh = self._tokens.stored_refresh_token(self._account_id)
            self._tokens.mark_needs_reauth(self._account_id, reason)
        except Exception as exc:  # the log line below still reports it
            self._log.warning("cannot persist the re-authorisation mark", error=str(exc))
        self._log.error(
            "account needs re-authorisation",
            reason=reason,
            still_copying=not down,
            fix="run `cmamd auth --config <config>` for the cTrader ID of this account, "
            "then `systemctl reload cmamd`",
        )
        if self._reauth_watch is None or self._reauth_watch.done():
            self._reauth_watch = self._spawn(self._watch_for_new_tokens())

    async def _watch_for_new_tokens(self) -> None:
        while self.needs_reauth is not None:
            await asyncio.sleep(self._timing.reauth_watch_s)
            try:
                stored = self._tokens.stored_refresh_token(self._account_id)
            except Exception as exc:
                self._log.warning("cannot read the state store", error=str(exc))
                continue
            if stored and stored != self._refused_refresh:
                self.retry_authorisation("new tokens in the state store")

    def retry_authorisation(self, reason: str) -> None:
        """Try again after a re-authorisation was needed (new tokens, or a reload)."""
        if self.needs_reauth is None:
            return
        self.needs_reauth = None
        self.start(reason)

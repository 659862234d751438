"""Authorising one account on its connection, and keeping its token pair fresh.

The stored pair is used first; an access token refused is refreshed once; a stored pair
refused for good gives way, once, to the bootstrap pair of the config. A pair is rotated
before it expires (``tokens.refresh_margin_ms``), not when a request fails. Which
failures are final (only `cmamd auth` or an operator helps) is decided here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from structlog.stdlib import BoundLogger

from cmamd.accounts.timing import PRODUCTION, SessionTiming
from cmamd.accounts.token_keeper import NewTokens, TokenError, TokenKeeper, same_pair
from cmamd.connection.client import OpenApiConnection, refresh_tokens
from cmamd.connection.errors import RequestNotSent
from cmamd.connection.ratelimit import Priority
from cmamd.protocol.errors import APPLICATION_AUTH_CODES, OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb

TOKEN_REFUSED_CODES = frozenset({"CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"})
# What bringing an account up can raise; is_permanent tells refusals from transients.
RETRYABLE_OR_REFUSED = (TimeoutError, OpenApiError, TokenError, OutcomeUnknown, RequestNotSent)


def is_token_refusal(exc: BaseException) -> bool:
    """The account's token pair is refused: only a new authorisation (`cmamd auth`) helps."""
    return isinstance(exc, TokenError) or (
        isinstance(exc, OpenApiError) and exc.code in TOKEN_REFUSED_CODES
    )


def is_permanent(exc: BaseException) -> bool:
    """The server refused the token or the account: retrying cannot help."""
    return isinstance(exc, TokenError) or (
        isinstance(exc, OpenApiError)
        and (exc.account_refused or exc.code in APPLICATION_AUTH_CODES)  # the app itself
    )


class Authoriser:
    def __init__(
        self,
        connection: OpenApiConnection,
        tokens: TokenKeeper,
        account_id: int,
        log: BoundLogger,
        timing: SessionTiming = PRODUCTION,
    ) -> None:
        self._connection = connection
        self._timing = timing
        self._tokens = tokens
        self._account_id = account_id
        self._log = log
        # False until the server accepted the account on the current link, and again once
        # it says the authorisation is gone: only then is it worth re-authorising.
        self.authorised = False

    def note_if_unauthorised(self, exc: BaseException) -> None:
        if isinstance(exc, OpenApiError) and exc.session_lost:
            self.authorised = False

    async def authorise(self, *, may_refresh: bool) -> str | None:
        """Authorise with the stored pair (refreshed first when due and ``may_refresh``).

        Returns why the account needs `cmamd auth` although it is authorised (its refresh
        token was refused, its access token still works), else None.
        """
        before = self._tokens.current(self._account_id)
        try:
            return await self._authorise_with_stored_tokens(may_refresh)
        except (OpenApiError, TokenError) as exc:
            if not is_permanent(exc):
                raise
            if not same_pair(before, self._tokens.current(self._account_id)):
                pass  # a concurrent attempt stored another pair meanwhile: use that one
            elif self._tokens.adopt_bootstrap(self._account_id):
                # The stored pair is refused and the config offers another one: try it, once.
                self._log.warning(
                    "stored token pair refused",
                    next="trying the bootstrap pair from the config",
                    error=str(exc),
                )
            else:
                raise
            return await self._authorise_with_stored_tokens(may_refresh)

    async def _authorise_with_stored_tokens(self, may_refresh: bool) -> str | None:
        if may_refresh and self._tokens.needs_refresh(self._account_id):
            try:
                await self.refresh_tokens()
            except OpenApiError as exc:
                if not is_token_refusal(exc):
                    raise
                # The refresh token is dead, but the access token held may still be valid
                # until it expires: keep copying with it, and ask for `cmamd auth` now.
                await self.account_auth()
                return f"refresh token refused ({exc.code})"
        try:
            await self.account_auth()
        except OpenApiError as exc:
            if exc.code not in TOKEN_REFUSED_CODES:
                raise
            self._log.warning("access token refused, refreshing", code=exc.code)
            await self.refresh_tokens()
            await self.account_auth()
        return None

    async def account_auth(self) -> None:
        token = self._tokens.current(self._account_id).access_token
        try:
            await self._connection.request(
                pb.ProtoOAAccountAuthReq(ctidTraderAccountId=self._account_id, accessToken=token),
                priority=Priority.SESSION,
            )
        except OpenApiError as exc:
            if exc.code != "ALREADY_LOGGED_IN":  # already authorised: the goal is reached
                raise
        self.authorised = True
        self._log.info("account authorised")

    async def refresh_tokens(self) -> None:
        async def refresher(refresh_token: str) -> NewTokens:
            pair = await refresh_tokens(self._connection, refresh_token)
            return NewTokens(pair.access_token, pair.refresh_token, pair.expires_in_s)

        try:
            await self._tokens.refresh(self._account_id, refresher)
        except OutcomeUnknown as lost:
            # Sent, no answer: the server may or may not have rotated the pair. If it did
            # not, the held refresh token still works; if it did, it is refused now and the
            # caller falls back on the held access token, then asks for `cmamd auth`.
            self._log.warning(
                "token refresh reply lost", next="trying the held refresh token again"
            )
            try:
                await self._connection.wait_ready(timeout=self._timing.lost_refresh_wait_s)
            except Exception:  # link still down or closing: a transient, retried later
                raise lost from None
            await self._tokens.refresh(self._account_id, refresher)

    async def rotate_when_due(
        self, may_rotate: Callable[[], bool], on_refused: Callable[[str], None]
    ) -> None:
        """Rotate the token pair before it expires (a day before, or after three quarters
        of a shorter lifetime: ``tokens.refresh_margin_ms``), whenever ``may_rotate()``.

        The server then invalidates the old token for every account of the pair, and the
        recovery that follows re-authorises each of them with the new one. A refused
        rotation goes to ``on_refused``: the held access token, or `cmamd auth`, settles it.
        """
        while True:
            try:
                due = self._tokens.seconds_until_refresh(self._account_id)
            except TokenError:
                due = None
            timing = self._timing
            await asyncio.sleep(
                max(due if due is not None else timing.token_check_s, timing.token_timer_min_s)
            )
            if not may_rotate():
                continue
            try:
                if self._tokens.needs_refresh(self._account_id):
                    await self.refresh_tokens()
            except Exception as exc:
                if is_token_refusal(exc):
                    on_refused(f"token rotation refused: {exc}")
                    continue
                self._log.warning("token rotation failed", error=str(exc), next="retrying later")

"""Access tokens per account, refreshed before they expire, persisted before they are used.

A refresh token is single-use and one token pair usually authorises every account of a
cTID, so accounts holding the same refresh token form one group: a refresh is done once
per group, under a lock, and the new pair is written to the store for every account of the
group in one transaction before anything uses it.

The config's pair (``access_token``/``refresh_token``) only bootstraps: the store's pair wins
once there is one. When the stored pair is refused and the config offers a different pair
(the operator fixed the credential), that pair is tried once; ``cmamd reset-tokens`` puts
it in the store on request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cmamd.accounts.timing import PRODUCTION, SessionTiming
from cmamd.logs import get_logger, register_secret
from cmamd.state.shared_tokens import reauth_key, reauth_value
from cmamd.state.store import StateStore, StoredTokens

log = get_logger("cmamd.accounts.token_keeper")


@dataclass(frozen=True, slots=True)
class NewTokens:
    access_token: str
    refresh_token: str
    expires_in_s: int


Refresher = Callable[[str], Awaitable[NewTokens]]


class TokenError(Exception):
    """No usable token for an account (never authorised, or its refresh token was refused)."""


class TokenKeeper:
    def __init__(
        self,
        store: StateStore,
        clock: Callable[[], float] = time.time,
        timing: SessionTiming = PRODUCTION,
    ) -> None:
        self._store = store
        self._clock = clock
        self._timing = timing
        self._locks: dict[str, asyncio.Lock] = {}
        self._bootstrap: dict[int, StoredTokens] = {}
        self._bootstrap_tried: set[int] = set()

    def seed(self, account_id: int, access_token: str | None, refresh_token: str | None) -> None:
        """Bootstrap tokens from the config, stored only when the store has none yet."""
        if not (access_token or refresh_token):
            self._bootstrap.pop(account_id, None)
            return
        pair = bootstrap_pair(access_token, refresh_token, self._now_ms())
        known = self._bootstrap.get(account_id)
        if known is None or not same_pair(known, pair):
            self._bootstrap[account_id] = pair
            self._bootstrap_tried.discard(account_id)  # a new pair deserves its one try
        if self._store.get_tokens(account_id) is None:
            self._store.put_tokens(account_id, pair)
            self._bootstrap_tried.add(account_id)

    def adopt_bootstrap(self, account_id: int) -> bool:
        """After the stored pair was refused: store the config's pair if it is another one
        not tried yet. True when there is a new pair to try."""
        pair = self._bootstrap.get(account_id)
        if pair is None or account_id in self._bootstrap_tried:
            return False
        self._bootstrap_tried.add(account_id)
        stored = self._store.get_tokens(account_id)
        if stored is not None and same_pair(stored, pair):
            return False
        self._store.put_tokens(account_id, pair)
        log.warning(
            "stored token pair replaced by the config's bootstrap pair", account_id=account_id
        )
        return True

    def current(self, account_id: int) -> StoredTokens:
        tokens = self._store.get_tokens(account_id)
        if tokens is None:
            raise TokenError(
                f"account {account_id} has no token: run `cmamd auth` or set "
                "access_token/refresh_token for it in the config"
            )
        register_secret(tokens.access_token)
        register_secret(tokens.refresh_token)
        return tokens

    def needs_refresh(self, account_id: int) -> bool:
        due = self.seconds_until_refresh(account_id)
        return due is not None and due <= 0

    def seconds_until_refresh(self, account_id: int) -> float | None:
        """When the account's pair should be rotated (None: its expiry is not known)."""
        tokens = self.current(account_id)
        if tokens.expires_at_ms is None:
            return None
        margin_ms = refresh_margin_ms(tokens, self._timing)
        return (tokens.expires_at_ms - margin_ms - self._now_ms()) / 1000

    async def refresh(self, account_id: int, refresher: Refresher) -> StoredTokens:
        """Rotate the pair of ``account_id``'s group; a group refreshes once at a time."""
        before = self.current(account_id)
        lock = self._locks.setdefault(before.refresh_token, asyncio.Lock())
        async with lock:
            latest = self.current(account_id)
            if latest.refresh_token != before.refresh_token:
                return latest  # another account of the group rotated it meanwhile
            if not latest.refresh_token:
                raise TokenError(f"account {account_id} has no refresh token")
            group = self._store.accounts_with_refresh_token(latest.refresh_token)
            fresh = await refresher(latest.refresh_token)
            register_secret(fresh.access_token)
            register_secret(fresh.refresh_token)
            stored = StoredTokens(
                fresh.access_token,
                fresh.refresh_token,
                self._now_ms() + fresh.expires_in_s * 1000,
                self._now_ms(),
            )
            self._store.put_tokens_many({acc: stored for acc in {account_id, *group}})
            log.info("tokens refreshed", account_ids=sorted({account_id, *group}))
            return stored

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # re-authorisation marks (read by `cmamd accounts`, cleared by `cmamd auth`) ---------
    def mark_needs_reauth(self, account_id: int, reason: str) -> None:
        self._store.set_meta(reauth_key(account_id), reauth_value(reason, self._now_ms()))

    def clear_needs_reauth(self, account_id: int) -> None:
        if self._store.get_meta(reauth_key(account_id)):
            self._store.set_meta(reauth_key(account_id), "")

    def stored_refresh_token(self, account_id: int) -> str | None:
        """The refresh token in the store now (another process may have written it)."""
        tokens = self._store.get_tokens(account_id)
        return None if tokens is None else tokens.refresh_token


def refresh_margin_ms(tokens: StoredTokens, timing: SessionTiming = PRODUCTION) -> int:
    """How long before its expiry a pair is rotated: a day, or a quarter of its lifetime
    (from when it was stored to its expiry) when that is shorter (``timing``'s margins)."""
    if tokens.expires_at_ms is None:
        return timing.refresh_margin_ms
    lifetime_ms = tokens.expires_at_ms - tokens.updated_ms
    share_ms = max(0, int(lifetime_ms * timing.refresh_margin_fraction))
    return min(timing.refresh_margin_ms, share_ms)


def bootstrap_pair(
    access_token: str | None, refresh_token: str | None, now_ms: int
) -> StoredTokens:
    # A refresh token alone is enough: expired at 0, it is rotated before first use.
    expires_at_ms = None if access_token else 0
    return StoredTokens(access_token or "", refresh_token or "", expires_at_ms, now_ms)


def same_pair(a: StoredTokens, b: StoredTokens) -> bool:
    return (a.access_token, a.refresh_token) == (b.access_token, b.refresh_token)

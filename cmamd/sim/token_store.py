"""OAuth tokens of each cTrader ID: validation, single-use refresh, revocation, expiry.

One access token authorises every account of its cTID. Refreshing issues a new pair and kills
both old tokens (the refresh token is single-use, docs/protocol.md §2). Tokens are fake
credentials of a local simulator; they are still never logged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cmamd.sim.config import CtidConfig
from cmamd.sim.defaults import generated_token


class TokenRefused(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


@dataclass(slots=True)
class Ctid:
    name: str
    account_ids: frozenset[int]
    access_token: str | None
    """None after revocation: only a refresh gives the cTID a working access token again."""
    refresh_token: str
    issued_at: float
    all_account_ids: frozenset[int] = frozenset()
    """Every account the cTID owns; ``account_ids`` are those its current grant covers."""
    scope: str = "trading"


class TokenStore:
    def __init__(
        self,
        ctids: Sequence[CtidConfig],
        *,
        seed: int,
        ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._rng = random.Random(f"{seed}:rotations")
        self._ctids = [
            Ctid(
                name=c.name,
                account_ids=frozenset(a.account_id for a in c.accounts),
                access_token=c.access_token or generated_token(seed, f"access:{c.name}"),
                refresh_token=c.refresh_token or generated_token(seed, f"refresh:{c.name}"),
                issued_at=clock(),
                all_account_ids=frozenset(a.account_id for a in c.accounts),
            )
            for c in ctids
        ]
        self._by_account = {a: c for c in self._ctids for a in c.account_ids}

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    def ctid_of(self, account_id: int) -> Ctid:
        return self._by_account[account_id]

    def owner_of_access(self, access_token: str) -> Ctid:
        """The cTID a live access token belongs to; TokenRefused if unknown, revoked or expired."""
        for ctid in self._ctids:
            if ctid.access_token is not None and ctid.access_token == access_token:
                if self._clock() - ctid.issued_at >= self._ttl_s:
                    raise TokenRefused("OA_AUTH_TOKEN_EXPIRED", "access token expired")
                return ctid
        raise TokenRefused("CH_ACCESS_TOKEN_INVALID", "access token is invalid")

    def authorise(self, access_token: str, account_id: int) -> Ctid:
        ctid = self.owner_of_access(access_token)
        if account_id not in ctid.account_ids:
            raise TokenRefused(
                "CH_ACCESS_TOKEN_INVALID", "access token does not grant this account"
            )
        return ctid

    def refresh(self, refresh_token: str) -> Ctid:
        """Rotate the pair of the cTID owning ``refresh_token``; the old pair dies."""
        for ctid in self._ctids:
            if ctid.refresh_token == refresh_token:
                ctid.access_token = self._new_token()
                ctid.refresh_token = self._new_token()
                ctid.issued_at = self._clock()
                return ctid
        raise TokenRefused("CH_ACCESS_TOKEN_INVALID", "refresh token is invalid")

    def by_name(self, name: str) -> Ctid:
        for ctid in self._ctids:
            if ctid.name == name:
                return ctid
        raise KeyError(name)

    def grant(self, name: str, account_ids: frozenset[int], scope: str) -> Ctid:
        """A new authorisation of the cTID: a new pair for ``account_ids``; the old pair dies.

        Accounts left out of a re-grant lose access (the trap of re-granting a cTID
        without selecting every account again).
        """
        ctid = self.by_name(name)
        ctid.account_ids = frozenset(account_ids)
        ctid.scope = scope
        ctid.access_token = self._new_token()
        ctid.refresh_token = self._new_token()
        ctid.issued_at = self._clock()
        return ctid

    def revoke_access(self, account_id: int) -> Ctid:
        """Kill the access token authorising ``account_id`` (and its cTID's other accounts)."""
        ctid = self._by_account[account_id]
        ctid.access_token = None
        return ctid

    def _new_token(self) -> str:
        return f"{self._rng.getrandbits(160):040x}"

"""Token rows written and read from outside the daemon (`cmamd auth`, `cmamd accounts`).

The store is locked against a second daemon, but `cmamd auth` must be able to hand new
tokens to a daemon that is running. sqlite itself arbitrates writers: when the directory
lock is held, the new pair goes in through a short-lived connection of its own, one
``BEGIN IMMEDIATE`` transaction with ``synchronous=FULL`` on the WAL file the daemon uses,
waiting (busy timeout) for the daemon's own short transactions. The daemon reads tokens
from the file each time it authorises, so it picks the new pair up without a restart.

Besides the tokens, the daemon keeps in ``meta`` which accounts need a new authorisation
(``needs-reauth:<account id>``); storing a new pair for an account clears its mark.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmamd.state.errors import StateError, StateLocked
from cmamd.state.records import StoredTokens
from cmamd.state.store import DB_NAME, StateStore, wall_clock_ms

REAUTH_PREFIX = "needs-reauth:"
INFO_PREFIX = "account-info:"  # what `cmamd auth` learnt of an account: broker, login, ...
BUSY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class TokenRow:
    account_id: int
    has_access: bool
    has_refresh: bool
    expires_at_ms: int | None
    updated_ms: int


@dataclass(frozen=True, slots=True)
class StoreView:
    """What the store knows about accounts, without any secret."""

    tokens: dict[int, TokenRow]
    needs_reauth: dict[int, str]  # account id -> why
    info: dict[int, dict[str, Any]] = field(default_factory=dict)  # account id -> facts


def reauth_key(account_id: int) -> str:
    return f"{REAUTH_PREFIX}{account_id}"


def reauth_value(reason: str, at_ms: int) -> str:
    return json.dumps({"reason": reason, "at_ms": at_ms})


def store_pairs(
    state_dir: Path,
    pairs: Mapping[int, StoredTokens],
    info: Mapping[int, Mapping[str, Any]] | None = None,
) -> None:
    """Durably store each account's pair and clear its re-authorisation mark, in one
    transaction; ``info`` (broker, login, ...) is kept for `cmamd accounts`.

    The directory lock is taken only to create a store that does not exist yet: taking it
    otherwise, even briefly, could make a daemon starting at that instant fail.
    """
    meta = [(reauth_key(a), "") for a in pairs]
    meta += [(f"{INFO_PREFIX}{a}", json.dumps(dict(facts))) for a, facts in (info or {}).items()]
    path = Path(state_dir) / DB_NAME
    if not path.exists():
        # StateLocked: a daemon is creating it right now, so write next to it
        with contextlib.suppress(StateLocked):
            StateStore.open(state_dir).close()  # directory 0700, file 0600, schema
    _store_alongside_daemon(path, pairs, meta)


def _store_alongside_daemon(
    path: Path, pairs: Mapping[int, StoredTokens], meta: list[tuple[str, str]]
) -> None:
    now_ms = wall_clock_ms()
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise StateError(f"{path}: the state store is not in WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO tokens (account_id, access_token, refresh_token, expires_at_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
                "access_token = excluded.access_token, refresh_token = excluded.refresh_token, "
                "expires_at_ms = excluded.expires_at_ms, updated_ms = excluded.updated_ms",
                [
                    (a, p.access_token, p.refresh_token, p.expires_at_ms, p.updated_ms or now_ms)
                    for a, p in pairs.items()
                ],
            )
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                meta,
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot store the tokens: {exc}") from exc
    finally:
        conn.close()


def read_view(state_dir: Path) -> StoreView:
    """Token facts and re-authorisation marks, read-only (works while the daemon runs)."""
    path = Path(state_dir) / DB_NAME
    if not path.exists():
        return StoreView({}, {})
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot read the state store: {exc}") from exc
    try:
        rows = conn.execute(
            "SELECT account_id, access_token != '', refresh_token != '', expires_at_ms, "
            "updated_ms FROM tokens"
        ).fetchall()
        marks = conn.execute(
            "SELECT key, value FROM meta WHERE key LIKE ? AND value != ''",
            (REAUTH_PREFIX + "%",),
        ).fetchall()
        facts = conn.execute(
            "SELECT key, value FROM meta WHERE key LIKE ?", (INFO_PREFIX + "%",)
        ).fetchall()
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot read the state store: {exc}") from exc
    finally:
        conn.close()
    tokens = {int(r[0]): TokenRow(int(r[0]), bool(r[1]), bool(r[2]), r[3], int(r[4])) for r in rows}
    needs: dict[int, str] = {}
    for key, value in marks:
        try:
            needs[int(key[len(REAUTH_PREFIX) :])] = str(json.loads(value).get("reason", ""))
        except (ValueError, AttributeError):
            needs[int(key[len(REAUTH_PREFIX) :])] = value
    info: dict[int, dict[str, Any]] = {}
    for key, value in facts:
        try:
            loaded = json.loads(value)
        except ValueError:
            continue
        if isinstance(loaded, dict):
            info[int(key[len(INFO_PREFIX) :])] = loaded
    return StoreView(tokens, needs, info)


def tokens_for(state_dir: Path, account_id: int) -> StoredTokens | None:
    """The stored pair of one account (for `cmamd accounts --remote`), read-only."""
    path = Path(state_dir) / DB_NAME
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        row = conn.execute(
            "SELECT access_token, refresh_token, expires_at_ms, updated_ms FROM tokens "
            "WHERE account_id = ?",
            (account_id,),
        ).fetchone()
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot read the state store: {exc}") from exc
    finally:
        conn.close()
    return None if row is None else StoredTokens(*row)

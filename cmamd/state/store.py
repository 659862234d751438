"""Durable daemon state in one sqlite file: OAuth tokens, copy links, replication journal.

Everything here must survive a crash at any instant: a refresh token is single-use (losing
the new one locks the user out) and an order sent but not journaled could be sent twice
after a restart. So every write is one short transaction committed before the call returns,
and the journal entry of an order is written together with the link update it belongs to.
The file holds live credentials: the directory is 0700 and the database files 0600 whatever
the umask.

Durability has two levels (see docs/operations.md, "What survives a crash"). WAL with
``synchronous=NORMAL``: a commit is in the operating system once the call returns, so it
survives the process being killed (kill -9, OOM, a crash), but not a power cut or kernel
panic, which may drop the last commits (the WAL is synced at checkpoints). That is what
links and the journal use: they are on the copy path, and what a power cut could drop is
settled by the deterministic label plus reconcile at start-up. Tokens are written with
``synchronous=FULL`` (the WAL is fsynced before the call returns): a rotated refresh token
is single-use and must survive anything once it is about to be used.

The API is synchronous on purpose: each call is a small indexed write on a local file,
cheaper than a hop to a thread, and the daemon's single event loop owns the store.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cmamd.state import files
from cmamd.state.errors import DuplicateIntent, StateError, StateLocked
from cmamd.state.records import (
    CLOSED_LINK_STATUS,
    JOURNAL_COLUMNS,
    OUTCOMES,
    SETTLED_OUTCOMES,
    JournalEntry,
    StoredTokens,
    from_json,
    journal_entry,
    link_columns,
    to_json,
)
from cmamd.state.schema import MIGRATIONS, migrate

# The records and errors are re-exported: callers may import everything from here.
__all__ = [
    "DB_NAME",
    "LOCK_NAME",
    "DuplicateIntent",
    "JournalEntry",
    "StateError",
    "StateLocked",
    "StateStore",
    "StoredTokens",
    "wall_clock_ms",
]

DB_NAME = "cmamd.sqlite3"
LOCK_NAME = "cmamd.lock"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class StateStore:
    """The daemon's sqlite state. Create with :meth:`open`; one instance per process."""

    def __init__(
        self, conn: sqlite3.Connection, lock_fd: int, path: Path, clock_ms: Callable[[], int]
    ) -> None:
        self._conn = conn
        self._lock_fd = lock_fd
        self._clock_ms = clock_ms
        self.path = path

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        migrations: Sequence[str] = MIGRATIONS,
    ) -> StateStore:
        """Open (creating if needed) the store in ``state_dir`` and bring its schema up to date.

        Raises :class:`StateLocked` when another process has it open.
        """
        state_dir = Path(state_dir)
        files.prepare_dir(state_dir)
        lock_fd = files.lock_exclusive(state_dir / LOCK_NAME)
        conn: sqlite3.Connection | None = None
        try:
            path = state_dir / DB_NAME
            files.create_private(path)
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below,
            # never the sqlite3 module's implicit ones.
            conn = sqlite3.connect(path, isolation_level=None)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StateError(f"{path}: cannot use WAL journaling (got {mode!r})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn, migrations)
            files.tighten_sidecars(path)
        except BaseException:
            if conn is not None:
                conn.close()
            os.close(lock_fd)
            raise
        return cls(conn, lock_fd, path, clock_ms)

    def close(self) -> None:
        if self._lock_fd < 0:
            return
        self._conn.close()
        os.close(self._lock_fd)  # releases the flock
        self._lock_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _fully_durable(self) -> Iterator[None]:
        """Commits inside are fsynced before they return (they survive a power cut)."""
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self._conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        # IMMEDIATE takes the write lock up front, so a transaction never fails half-way
        # for want of it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- tokens ---------------------------------------------------------------------------

    def get_tokens(self, account_id: int) -> StoredTokens | None:
        row = self._conn.execute(
            "SELECT access_token, refresh_token, expires_at_ms, updated_ms FROM tokens "
            "WHERE account_id = ?",
            (account_id,),
        ).fetchone()
        return None if row is None else StoredTokens(*row)

    def put_tokens(self, account_id: int, tokens: StoredTokens) -> StoredTokens:
        """Durably replace the account's tokens; returns what was stored.

        Call before using a new refresh token: once this returns, a crash cannot lose it.
        An ``updated_ms`` of 0 is stamped with the store's clock.
        """
        stored = self.put_tokens_many({account_id: tokens})
        return stored[account_id]

    def put_tokens_many(self, tokens: Mapping[int, StoredTokens]) -> dict[int, StoredTokens]:
        """Replace the tokens of several accounts in one transaction.

        One cTID's token pair authorises all its accounts: after a refresh every one of
        them gets the new pair together, or none does.
        """
        now_ms = self._clock_ms()
        stored = {
            account_id: pair if pair.updated_ms else dataclasses.replace(pair, updated_ms=now_ms)
            for account_id, pair in tokens.items()
        }
        with self._fully_durable(), self._transaction() as conn:
            conn.executemany(
                "INSERT INTO tokens (account_id, access_token, refresh_token, expires_at_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
                "access_token = excluded.access_token, refresh_token = excluded.refresh_token, "
                "expires_at_ms = excluded.expires_at_ms, updated_ms = excluded.updated_ms",
                [
                    (account_id, p.access_token, p.refresh_token, p.expires_at_ms, p.updated_ms)
                    for account_id, p in stored.items()
                ],
            )
        return stored

    def accounts_with_refresh_token(self, refresh_token: str) -> list[int]:
        """The accounts sharing this refresh token (the group a refresh rotates at once)."""
        rows = self._conn.execute(
            "SELECT account_id FROM tokens WHERE refresh_token = ? ORDER BY account_id",
            (refresh_token,),
        ).fetchall()
        return [account_id for (account_id,) in rows]

    # --- links ----------------------------------------------------------------------------

    def put_link(self, link: Mapping[str, Any]) -> None:
        """Insert or replace a link record (a JSON object with the identity keys and status)."""
        with self._transaction() as conn:
            self._write_link(conn, link)

    def _write_link(self, conn: sqlite3.Connection, link: Mapping[str, Any]) -> None:
        rule, master_id, follower_id, key, status = link_columns(link)
        conn.execute(
            "INSERT INTO links (rule, master_account_id, follower_account_id, key, status, "
            "data, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (rule, master_account_id, follower_account_id, key) DO UPDATE SET "
            "status = excluded.status, data = excluded.data, updated_ms = excluded.updated_ms",
            (rule, master_id, follower_id, key, status, to_json(link), self._clock_ms()),
        )

    def get_link(
        self, rule: str, master_id: int, follower_id: int, key: str
    ) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT data FROM links WHERE rule = ? AND master_account_id = ? "
            "AND follower_account_id = ? AND key = ?",
            (rule, master_id, follower_id, key),
        ).fetchone()
        return None if row is None else from_json(row[0])

    def links(
        self,
        rule: str | None = None,
        master_id: int | None = None,
        follower_id: int | None = None,
        include_closed: bool = False,
    ) -> list[dict[str, Any]]:
        """Links matching every given filter, in identity order; closed ones only on request."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("rule", rule),
            ("master_account_id", master_id),
            ("follower_account_id", follower_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if not include_closed:
            clauses.append("status != ?")
            params.append(CLOSED_LINK_STATUS)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(
            f"SELECT data FROM links {where} "
            "ORDER BY rule, master_account_id, follower_account_id, key",
            params,
        ).fetchall()
        return [from_json(data) for (data,) in rows]

    def delete_closed_links(self, older_than_ms: int) -> int:
        """Housekeeping: forget links closed before ``older_than_ms``; returns how many."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM links WHERE status = ? AND updated_ms < ?",
                (CLOSED_LINK_STATUS, older_than_ms),
            )
        return cursor.rowcount

    def delete_links(self, identities: Sequence[tuple[str, int, int, str]]) -> int:
        """Forget these links, each given as (rule, master id, follower id, key)."""
        with self._transaction() as conn:
            cursor = conn.executemany(
                "DELETE FROM links WHERE rule = ? AND master_account_id = ? "
                "AND follower_account_id = ? AND key = ?",
                list(identities),
            )
        return cursor.rowcount

    def delete_finished_links_except(
        self, keep: Collection[tuple[str, int, int]], older_than_ms: int
    ) -> int:
        """Forget finished links (not opening/open) of every (rule, master id, follower id)
        not in ``keep`` (destinations no longer configured) older than ``older_than_ms``."""
        pairs = self._conn.execute(
            "SELECT DISTINCT rule, master_account_id, follower_account_id FROM links"
        ).fetchall()
        gone = [tuple(row) for row in pairs if tuple(row) not in set(keep)]
        if not gone:
            return 0
        with self._transaction() as conn:
            cursor = conn.executemany(
                "DELETE FROM links WHERE rule = ? AND master_account_id = ? "
                "AND follower_account_id = ? AND status NOT IN ('opening', 'open') "
                "AND updated_ms < ?",
                [(*pair, older_than_ms) for pair in gone],
            )
        return cursor.rowcount

    # --- replication journal --------------------------------------------------------------

    def journal_intent(
        self,
        intent_id: str,
        follower_id: int,
        key: str,
        action: str,
        client_order_id: str | None,
        payload: Mapping[str, Any],
    ) -> None:
        """Record an order about to be sent. Raises :class:`DuplicateIntent` if known."""
        with self._transaction() as conn:
            self._write_intent(conn, intent_id, follower_id, key, action, client_order_id, payload)

    def record_intent(
        self,
        link: Mapping[str, Any] | None,
        intent_id: str,
        follower_id: int,
        key: str,
        action: str,
        client_order_id: str | None,
        payload: Mapping[str, Any],
    ) -> None:
        """Write the link update and the journal entry of its order in one transaction.

        ``link`` is None for an order that belongs to no link record (journal entry only).
        """
        with self._transaction() as conn:
            if link is not None:
                self._write_link(conn, link)
            self._write_intent(conn, intent_id, follower_id, key, action, client_order_id, payload)

    def _write_intent(
        self,
        conn: sqlite3.Connection,
        intent_id: str,
        follower_id: int,
        key: str,
        action: str,
        client_order_id: str | None,
        payload: Mapping[str, Any],
    ) -> None:
        try:
            conn.execute(
                "INSERT INTO journal (intent_id, follower_account_id, key, action, "
                "client_order_id, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    intent_id,
                    follower_id,
                    key,
                    action,
                    client_order_id,
                    to_json(payload),
                    self._clock_ms(),
                ),
            )
        except sqlite3.IntegrityError as error:
            if self._intent_exists(conn, intent_id):
                raise DuplicateIntent(f"intent {intent_id!r} is already journaled") from error
            raise

    @staticmethod
    def _intent_exists(conn: sqlite3.Connection, intent_id: str) -> bool:
        row = conn.execute("SELECT 1 FROM journal WHERE intent_id = ?", (intent_id,)).fetchone()
        return row is not None

    def journal_outcome(self, intent_id: str, outcome: str, detail: str) -> None:
        """Record how an intent ended.

        ``outcome`` is one of :data:`OUTCOMES`. "unknown" (sent, no answer) can later be
        settled; a settled outcome ("done", "rejected", "resolved") is final: changing it
        raises :class:`StateError`.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT outcome FROM journal WHERE intent_id = ?", (intent_id,)
            ).fetchone()
            if row is None:
                raise StateError(f"no journaled intent {intent_id!r}")
            if row[0] in SETTLED_OUTCOMES:
                raise StateError(f"intent {intent_id!r} is already settled as {row[0]!r}")
            conn.execute(
                "UPDATE journal SET outcome = ?, detail = ?, settled_ms = ? WHERE intent_id = ?",
                (outcome, detail, self._clock_ms(), intent_id),
            )

    def open_intents(self) -> list[JournalEntry]:
        """Intents a restarted daemon must settle by reconciling: no outcome, or "unknown"."""
        rows = self._conn.execute(
            f"SELECT {JOURNAL_COLUMNS} FROM journal "
            "WHERE outcome IS NULL OR outcome = 'unknown' ORDER BY seq"
        ).fetchall()
        return [journal_entry(row) for row in rows]

    def journal(self, follower_id: int | None = None, limit: int = 100) -> list[JournalEntry]:
        """The latest entries, newest first, optionally of one follower account."""
        if follower_id is None:
            sql = f"SELECT {JOURNAL_COLUMNS} FROM journal ORDER BY seq DESC LIMIT ?"
            params: tuple[int, ...] = (limit,)
        else:
            sql = (
                f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE follower_account_id = ? "
                "ORDER BY seq DESC LIMIT ?"
            )
            params = (follower_id, limit)
        rows = self._conn.execute(sql, params).fetchall()
        return [journal_entry(row) for row in rows]

    def prune_journal(self, older_than_ms: int) -> int:
        """Housekeeping: drop entries settled before ``older_than_ms``; open ones always stay."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM journal WHERE outcome IN ('done', 'rejected', 'resolved') "
                "AND settled_ms < ?",
                (older_than_ms,),
            )
        return cursor.rowcount

    # --- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_items(self, prefix: str) -> dict[str, str]:
        """Every meta entry whose key starts with ``prefix`` (keys returned whole)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._conn.execute(
            "SELECT key, value FROM meta WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",)
        ).fetchall()
        return {str(key): str(value) for key, value in rows}

    def delete_meta(self, keys: Sequence[str]) -> None:
        with self._transaction() as conn:
            conn.executemany("DELETE FROM meta WHERE key = ?", [(key,) for key in keys])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

"""Durable daemon state in one sqlite file: OAuth tokens, copy links, replication journal.

Everything here must survive a crash at any instant: a refresh token is single-use (losing
the new one locks the user out) and an order sent but not journaled could be sent twice
after a restart. So every write is durable against a kill before the call returns, and the
journal entry of an order is written together with the link update it belongs to.
The file holds live credentials: the directory is 0700 and the database files 0600 whatever
the umask.

Durability has two levels (see docs/operations.md, "What survives a crash"). Links and the
journal go through the write-behind op log (write_behind.py): a write is in the
operating system once the call returns, so it survives the process being killed (kill -9,
OOM, a crash), but not a power cut or kernel panic, which may drop the last writes. They
are on the copy path, and what a power cut could drop is settled by the deterministic label
plus reconcile at start-up; sqlite gets them within 100 ms, after the order has gone (WAL,
``synchronous=NORMAL``, group commit). Tokens are written at once with
``synchronous=FULL`` (the WAL is fsynced before the call returns): a rotated refresh token
is single-use and must survive anything once it is about to be used.

The API stays synchronous: a write is a check against what is pending plus one
``write(2)``; a read of links or the journal first applies what is pending (they are read
at start-up and by operators, not on the copy path). Tokens and meta are written
at once (another process writes them too, see shared_tokens.py).
"""

from __future__ import annotations

import dataclasses
import itertools
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
from cmamd.state.write_behind import LOG_NAME, Op, Statement, WriteBehind, replay

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
RECENT_INTENTS = 4096  # outcomes kept in memory (a few hundred bytes each)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_UNKNOWN = object()  # an intent neither pending nor in the database

_UPSERT_LINK = (
    "INSERT INTO links (rule, master_account_id, follower_account_id, key, status, "
    "data, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (rule, master_account_id, follower_account_id, key) DO UPDATE SET "
    "status = excluded.status, data = excluded.data, updated_ms = excluded.updated_ms"
)
_INSERT_INTENT = (
    "INSERT INTO journal (intent_id, follower_account_id, key, action, "
    "client_order_id, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


class StateStore:
    """The daemon's sqlite state. Create with :meth:`open`; one instance per process."""

    def __init__(
        self, conn: sqlite3.Connection, lock_fd: int, path: Path, clock_ms: Callable[[], int]
    ) -> None:
        self._conn = conn
        self._lock_fd = lock_fd
        self._clock_ms = clock_ms
        self.path = path
        # The outcomes of the intents this process journaled lately, applied or not, with
        # the op's sequence number (only this process writes the journal: they are the
        # truth), so that settling one needs no read.
        self._pending_intents: dict[str, tuple[int, str | None]] = {}
        self._writer = WriteBehind(conn, path.with_name(LOG_NAME), self._applied)

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
            replay(conn, state_dir / LOG_NAME)  # before migrating: written for this schema
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
        self._writer.close()
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
    def _transaction(self, fully_durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A transaction of its own, after everything pending; ``fully_durable``: fsynced
        before it returns (it survives a power cut)."""
        self._writer.flush()
        conn = self._conn
        if fully_durable:
            conn.execute("PRAGMA synchronous=FULL")
        try:
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
        finally:
            if fully_durable:
                conn.execute("PRAGMA synchronous=NORMAL")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._writer.check()
        return self._conn.execute(sql, params).fetchall()

    def _caught_up(self) -> sqlite3.Connection:
        """The connection, once sqlite holds every write made so far (links, journal)."""
        self._writer.flush()
        return self._conn

    def _applied(self, seq: int) -> None:
        """Everything up to ``seq`` is in sqlite."""
        # Oldest first (insertion order): only applied ones may go, sqlite has them.
        excess = len(self._pending_intents) - RECENT_INTENTS
        if excess <= 0:
            return
        for key, (at, _) in list(itertools.islice(self._pending_intents.items(), excess)):
            if at > seq:
                break
            del self._pending_intents[key]

    def flush(self) -> None:
        """Apply every write made so far now (tests, and before reading links/journal)."""
        self._writer.flush()

    # --- tokens ---------------------------------------------------------------------------

    def get_tokens(self, account_id: int) -> StoredTokens | None:
        rows = self._read(
            "SELECT access_token, refresh_token, expires_at_ms, updated_ms FROM tokens "
            "WHERE account_id = ?",
            (account_id,),
        )
        return StoredTokens(*rows[0]) if rows else None

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
        with self._transaction(fully_durable=True) as conn:
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
        rows = self._read(
            "SELECT account_id FROM tokens WHERE refresh_token = ? ORDER BY account_id",
            (refresh_token,),
        )
        return [account_id for (account_id,) in rows]

    # --- links ----------------------------------------------------------------------------

    def put_link(self, link: Mapping[str, Any]) -> None:
        """Insert or replace a link record (a JSON object with the identity keys and status)."""
        self._writer.submit([self._link_statement(link)])

    def _link_statement(self, link: Mapping[str, Any]) -> Statement:
        rule, master_id, follower_id, key, status = link_columns(link)
        return (
            _UPSERT_LINK,
            (rule, master_id, follower_id, key, status, to_json(link), self._clock_ms()),
        )

    def get_link(
        self, rule: str, master_id: int, follower_id: int, key: str
    ) -> dict[str, Any] | None:
        row = (
            self._caught_up()
            .execute(
                "SELECT data FROM links WHERE rule = ? AND master_account_id = ? "
                "AND follower_account_id = ? AND key = ?",
                (rule, master_id, follower_id, key),
            )
            .fetchone()
        )
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
        rows = (
            self._caught_up()
            .execute(
                f"SELECT data FROM links {where} "
                "ORDER BY rule, master_account_id, follower_account_id, key",
                params,
            )
            .fetchall()
        )
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
        pairs = (
            self._caught_up()
            .execute("SELECT DISTINCT rule, master_account_id, follower_account_id FROM links")
            .fetchall()
        )
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
        self.record_intent(None, intent_id, follower_id, key, action, client_order_id, payload)

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
        """Write the link update and the journal entry of its order as one op.

        ``link`` is None for an order that belongs to no link record (journal entry only).
        Raises :class:`DuplicateIntent` if the intent is known.
        """
        op: Op = [
            *([self._link_statement(link)] if link is not None else []),
            (
                _INSERT_INTENT,
                (
                    intent_id,
                    follower_id,
                    key,
                    action,
                    client_order_id,
                    to_json(payload),
                    self._clock_ms(),
                ),
            ),
        ]
        if self._outcome_of(intent_id) is not _UNKNOWN:
            raise DuplicateIntent(f"intent {intent_id!r} is already journaled")
        seq = self._writer.submit(op)
        self._pending_intents[intent_id] = (seq, None)

    def _outcome_of(self, intent_id: str) -> object:
        """The intent's outcome (None while open), pending writes first."""
        pending = self._pending_intents.get(intent_id)
        if pending is not None:
            return pending[1]
        rows = self._read("SELECT outcome FROM journal WHERE intent_id = ?", (intent_id,))
        return rows[0][0] if rows else _UNKNOWN

    def journal_outcome(self, intent_id: str, outcome: str, detail: str) -> None:
        """Record how an intent ended.

        ``outcome`` is one of :data:`OUTCOMES`. "unknown" (sent, no answer) can later be
        settled; a settled outcome ("done", "rejected", "resolved") is final: changing it
        raises :class:`StateError`.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        statement = (
            "UPDATE journal SET outcome = ?, detail = ?, settled_ms = ? WHERE intent_id = ?",
            (outcome, detail, self._clock_ms(), intent_id),
        )
        known = self._outcome_of(intent_id)
        if known is _UNKNOWN:
            raise StateError(f"no journaled intent {intent_id!r}")
        if known in SETTLED_OUTCOMES:
            raise StateError(f"intent {intent_id!r} is already settled as {known!r}")
        seq = self._writer.submit([statement])
        self._pending_intents.pop(intent_id, None)  # now the newest
        self._pending_intents[intent_id] = (seq, outcome)

    def open_intents(self) -> list[JournalEntry]:
        """Intents a restarted daemon must settle by reconciling: no outcome, or "unknown"."""
        rows = (
            self._caught_up()
            .execute(
                f"SELECT {JOURNAL_COLUMNS} FROM journal "
                "WHERE outcome IS NULL OR outcome = 'unknown' ORDER BY seq"
            )
            .fetchall()
        )
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
        rows = self._caught_up().execute(sql, params).fetchall()
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

    # Meta is written at once, not behind: `cmamd auth` (shared_tokens.py) writes marks
    # here while the daemon runs, and a write applied later would undo its newer one.

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def meta_items(self, prefix: str) -> dict[str, str]:
        """Every meta entry whose key starts with ``prefix`` (keys returned whole)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read(
            "SELECT key, value FROM meta WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",)
        )
        return {str(key): str(value) for key, value in rows}

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(_UPSERT_META, (key, value))

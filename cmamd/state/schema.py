"""The state database schema, as the list of migrations that builds it.

Migration N (1-based) turns a version N-1 database into version N; ``StateStore.open``
applies the missing ones in a single transaction. Append new scripts, never edit a released
one, and keep transaction control (BEGIN/COMMIT) out of them. The SQL sticks to what
sqlite 3.31 understands (no STRICT tables, no RETURNING): distributions still ship it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from cmamd.logs import get_logger
from cmamd.state.errors import StateError

log = get_logger(__name__)

_V1_INITIAL = """
CREATE TABLE tokens (
    account_id INTEGER PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at_ms INTEGER,
    updated_ms INTEGER NOT NULL
);

-- One master position/order <-> follower position/order pairing of a copy rule. The record
-- itself is the copy engine's JSON; the columns beside it are what queries select on.
CREATE TABLE links (
    rule TEXT NOT NULL,
    master_account_id INTEGER NOT NULL,
    follower_account_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (rule, master_account_id, follower_account_id, key)
);
CREATE INDEX links_by_master ON links (master_account_id, status);
CREATE INDEX links_by_follower ON links (follower_account_id, status);
CREATE INDEX links_by_status ON links (status, updated_ms);

-- Every order the copier decides to send, written before it is sent.
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    intent_id TEXT NOT NULL UNIQUE,
    follower_account_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    action TEXT NOT NULL,
    client_order_id TEXT,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    outcome TEXT CHECK (outcome IN ('done', 'rejected', 'unknown', 'resolved')),
    detail TEXT,
    settled_ms INTEGER
);
CREATE INDEX journal_open ON journal (seq) WHERE outcome IS NULL OR outcome = 'unknown';
CREATE INDEX journal_by_follower ON journal (follower_account_id, seq);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

MIGRATIONS: tuple[str, ...] = (_V1_INITIAL,)


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
    """Apply the pending migrations, all in one transaction: the file is at the old version
    or the new one, never in between."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    current = 0 if row is None else int(row[0])
    target = len(migrations)
    if current > target:
        raise StateError(
            f"state schema version {current} is newer than this cmamd knows ({target}); "
            "refusing to run an older release on it"
        )
    if current == target:
        return
    pending = "\n".join(migrations[current:])
    bump = (
        f"INSERT INTO schema_version (version) VALUES ({target});"
        if row is None
        else f"UPDATE schema_version SET version = {target};"
    )
    # executescript runs the whole text itself, so the transaction is spelled out in it.
    try:
        conn.executescript(f"BEGIN IMMEDIATE;\n{pending}\n{bump}\nCOMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("state schema migrated", from_version=current, to_version=target)

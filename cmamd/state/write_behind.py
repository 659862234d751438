"""Write-behind for the state store: an op log appended before the call returns, applied to
sqlite in group commits after the copy's order has gone.

A copy's link and journal entry must be durable before its order is sent, and that used to
mean a sqlite transaction on the event loop in front of every order. Here a write is one
``write(2)`` of a JSON line to an append-only file (``cmamd.oplog``): once it returns the
line is in the operating system and survives the process being killed (kill -9, OOM, a
crash), exactly what a WAL commit with ``synchronous=NORMAL`` gave. A timer on the event
loop then applies everything queued in one transaction (group commit) and records the last
sequence number applied in the same transaction; the log is emptied whenever sqlite has
caught up. At the next open, lines past that number are applied first (:func:`replay`).

Why not a writer thread: tried and measured (bench wire), it cost more than it saved. The
GIL hand-offs between the loop and the thread added ~0.4 ms of process CPU per copy and no
loop time was saved; the sqlite work per copy is small once it is one commit, not three.

Neither the log nor the NORMAL commits are fsynced: a power cut may drop the last writes,
as before; the deterministic labels plus the start-up reconcile settle what it drops.

A failed apply (disk full, I/O error) stops the store: every later call raises
:class:`StateError` (the daemon must not copy on without a journal) and the log keeps what
was not applied, for the next start.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cmamd.logs import get_logger
from cmamd.state.errors import StateError
from cmamd.state.records import COMPACT_JSON

log = get_logger(__name__)

LOG_NAME = "cmamd.oplog"
APPLIED_KEY = "state:oplog_applied"
# How long ops gather after the first before they are committed: a copy's writes (its
# intent, then its outcome and link a fill later), and those of the copies around it, share
# one transaction, applied after the orders have gone. A read, flush or close applies them
# at once; a kill leaves them to the log.
GROUP_WINDOW_S = 0.1
# The log is emptied once sqlite has caught up and it has grown past this (each truncation
# is a metadata write); a start skips the lines already applied.
LOG_KEEP_BYTES = 1 << 20
LOCKED_RETRY_S = 1.0

# One SQL statement with its parameters; an op is the statements of one store call.
Statement = tuple[str, Sequence[Any]]
Op = Sequence[Statement]


def _apply(conn: sqlite3.Connection, ops: Sequence[tuple[int, Op]]) -> None:
    """The ops and the applied mark in one transaction (the caller holds the connection)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for _, statements in ops:
            for sql, params in statements:
                conn.execute(sql, params)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (APPLIED_KEY, str(ops[-1][0])),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _applied_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (APPLIED_KEY,)).fetchone()
    return 0 if row is None else int(row[0])


def parse_log(data: bytes, path: Path) -> list[tuple[int, Op]]:
    """The ops of a log file. A last line cut short is dropped: its call never returned (so
    its order was never sent); a bad line before the last is a corrupt log."""
    ops: list[tuple[int, Op]] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            seq, statements = json.loads(line)
            ops.append((int(seq), [(str(sql), list(params)) for sql, params in statements]))
        except (ValueError, TypeError) as error:
            if number == len(lines):  # no newline after it: a write cut short
                log.warning("state op log incomplete last line dropped", path=str(path))
                continue
            raise StateError(f"{path}: line {number} is corrupt ({error})") from None
    return ops


def replay(conn: sqlite3.Connection, path: Path) -> int:
    """Apply what the log holds past the database's applied mark; returns how many ops.

    Runs at open, before the schema migration: the log was written against the schema the
    database has now. The commit is fsynced before the log is emptied.
    """
    if not path.exists():
        return 0
    ops = parse_log(path.read_bytes(), path)
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
    if ops and has_meta is None:
        # The database was deleted (a reset of the state) and the log left behind: its ops
        # belong to the database that is gone.
        log.warning("state op log of a deleted database dropped", ops=len(ops), path=str(path))
        ops = []
    pending = [op for op in ops if op[0] > _applied_seq(conn)] if ops else []
    if pending:
        conn.execute("PRAGMA synchronous=FULL")
        try:
            _apply(conn, pending)
        finally:
            conn.execute("PRAGMA synchronous=NORMAL")
        log.info("state op log replayed", ops=len(pending), path=str(path))
    os.truncate(path, 0)
    return len(pending)


class WriteBehind:
    """The op log and the deferred apply. Single-threaded: the store is the event loop's."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, on_applied: Callable[[int], None]
    ) -> None:
        self._conn = conn
        self._on_applied = on_applied
        self._queue: list[tuple[int, Op]] = []
        self._seq = self._applied = _applied_seq(conn)
        self._failure: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._log_bytes = 0  # written since the log was last emptied
        self._closed = False
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        os.fchmod(self._fd, 0o600)

    def check(self) -> None:
        """Raise if applying has failed: the store must not be written on."""
        if self._failure is not None:
            raise StateError(f"state store writer stopped: {self._failure}") from self._failure

    def submit(self, statements: Op) -> int:
        """Append the op to the log (durable against a kill once this returns) and queue it;
        returns its sequence number. Applied within ``GROUP_WINDOW_S`` on the running event
        loop, or at once when there is none (tools, tests)."""
        self.check()
        seq = self._seq + 1
        line = COMPACT_JSON.encode([seq, statements]).encode() + b"\n"
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        self._log_bytes += len(line)
        self._seq = seq
        self._queue.append((seq, statements))
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return seq
            self._timer = loop.call_later(GROUP_WINDOW_S, self._apply_queued)
        return seq

    def flush(self) -> None:
        """Apply every op submitted so far now (raises if applying fails)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._apply_queued()
        self.check()
        if self._queue:  # kept back by another process's lock: not in sqlite yet
            raise StateError("state database locked by another process")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._apply_queued()  # what fails stays in the log for the next start
        self._closed = True
        if self._timer is not None:  # a retry for a lock: the next start applies it
            self._timer.cancel()
            self._timer = None
        if not self._queue and self._failure is None:
            os.ftruncate(self._fd, 0)
        os.close(self._fd)

    def _apply_queued(self) -> None:
        self._timer = None
        if not self._queue or self._failure is not None or self._closed:
            return
        batch, self._queue = self._queue, []
        try:
            _apply(self._conn, batch)
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                self._stop(error, batch)
                return
            # `cmamd auth` (shared_tokens.py) held the write lock past sqlite's busy wait:
            # the batch waits for the next try (it is in the log meanwhile).
            log.warning("state database locked by another process", ops=len(batch))
            self._queue[:0] = batch
            self._retry_later()
            return
        except Exception as error:  # reported to every later caller
            self._stop(error, batch)
            return
        self._applied = batch[-1][0]
        if self._applied == self._seq and self._log_bytes > LOG_KEEP_BYTES:
            os.ftruncate(self._fd, 0)
            self._log_bytes = 0
        self._on_applied(self._applied)

    def _retry_later(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # the next submit or flush tries again
        self._timer = loop.call_later(LOCKED_RETRY_S, self._apply_queued)

    def _stop(self, error: Exception, batch: Sequence[tuple[int, Op]]) -> None:
        log.error("state store write failed", error=str(error), ops=len(batch))
        self._failure = error

"""Write-behind for the state store: an op log appended before the call returns, applied to
sqlite by one writer thread in group commits.

A copy's link and journal entry must be durable before its order is sent, and that used to
mean a sqlite transaction on the event loop in front of every order. Here a write is one
``write(2)`` of a JSON line to an append-only file (``cmamd.oplog``): once it returns the
line is in the operating system and survives the process being killed (kill -9, OOM, a
crash), exactly what a WAL commit with ``synchronous=NORMAL`` gave. One thread then applies
everything queued in one transaction (group commit) and records the last sequence number it
applied in the same transaction; the log is emptied whenever sqlite has caught up. At the
next open, lines past that number are applied before anything else (:func:`replay`).

Neither the log nor the NORMAL commits are fsynced: a power cut may drop the last writes,
as before; the deterministic labels plus the start-up reconcile settle what it drops.

A failed apply (disk full, I/O error) stops the writer: every later call of the store
raises :class:`StateError` (the daemon must not copy on without a journal) and the log
keeps what was not applied, for the next start.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cmamd.logs import get_logger
from cmamd.state.errors import StateError
from cmamd.state.records import COMPACT_JSON

log = get_logger(__name__)

LOG_NAME = "cmamd.oplog"
APPLIED_KEY = "state:oplog_applied"
# How long the writer gathers ops after the first before it commits: a copy's writes (its
# intent, then its outcome and link a fill later) share one transaction. A read or close
# that waits for the writer ends the wait at once.
GROUP_WINDOW_S = 0.01
LOCKED_RETRIES = 6

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
                log.warning("state op log: incomplete last line dropped", path=str(path))
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
    """The op log and its writer thread. ``guard`` serialises submissions with the writer's
    bookkeeping; the store also holds it while it checks its pending overlay."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        db_lock: threading.Lock,
        path: Path,
        on_applied: Callable[[int], None],
    ) -> None:
        self._conn = conn
        self._db_lock = db_lock
        self._on_applied = on_applied
        self.guard = threading.Condition()
        self._queue: deque[tuple[int, Op]] = deque()
        with db_lock:
            self._seq = self._applied = _applied_seq(conn)
        self._failure: BaseException | None = None
        self._closing = False
        self._hurry = 0  # callers waiting in flush()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        os.fchmod(self._fd, 0o600)
        self._thread = threading.Thread(target=self._run, name="cmamd-state-writer", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise if the writer has stopped on an error (call with or without ``guard``)."""
        if self._failure is not None:
            raise StateError(f"state store writer stopped: {self._failure}") from self._failure

    def submit(self, statements: Op) -> int:
        """Append the op to the log (durable against a kill once this returns) and queue it
        for the writer; returns its sequence number. Call with ``guard`` held."""
        self.check()
        seq = self._seq + 1
        line = COMPACT_JSON.encode([seq, statements]).encode() + b"\n"
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        self._seq = seq
        self._queue.append((seq, statements))
        if len(self._queue) == 1:  # the writer sleeps; once gathering, it needs no wake-up
            self.guard.notify_all()
        return seq

    def flush(self) -> None:
        """Wait until sqlite holds every op submitted so far."""
        with self.guard:
            self._hurry += 1
            self.guard.notify_all()
            try:
                while self._applied < self._seq and self._failure is None:
                    self.guard.wait()
            finally:
                self._hurry -= 1
            self.check()

    def close(self) -> None:
        with self.guard:
            self._closing = True
            self.guard.notify_all()
        self._thread.join()
        os.close(self._fd)

    def _apply_waiting_out_locks(self, batch: Sequence[tuple[int, Op]]) -> None:
        """Another process (``cmamd auth``) may hold the database's write lock for a moment:
        sqlite waits 5 s for it; past that the batch is tried again, up to ``LOCKED_RETRIES``
        times, before the writer gives up."""
        for attempt in range(1, LOCKED_RETRIES + 1):
            try:
                with self._db_lock:
                    _apply(self._conn, batch)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == LOCKED_RETRIES:
                    raise
                log.warning("state database locked by another process", attempt=attempt)

    def _run(self) -> None:
        while True:
            with self.guard:
                while not self._queue and not self._closing:
                    self.guard.wait()
                if not self._queue:
                    return
                left = GROUP_WINDOW_S
                while left > 0 and not (self._closing or self._hurry):
                    started = time.monotonic()
                    self.guard.wait(left)
                    left -= time.monotonic() - started
                batch = list(self._queue)
                self._queue.clear()
            try:
                self._apply_waiting_out_locks(batch)
            except BaseException as error:  # reported to every later caller
                log.error("state store write failed", error=str(error), ops=len(batch))
                with self.guard:
                    self._failure = error
                    self.guard.notify_all()
                return
            with self.guard:
                self._applied = batch[-1][0]
                if self._applied == self._seq:
                    os.ftruncate(self._fd, 0)
                self._on_applied(self._applied)
                self.guard.notify_all()

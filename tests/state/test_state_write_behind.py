"""The store's write-behind: writes reach sqlite after the call, survive a kill, replay at
open."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

from cmamd.state import StateError, StateStore
from cmamd.state.store import DB_NAME
from cmamd.state.write_behind import APPLIED_KEY, LOG_NAME


def link(key: str, status: str = "opening") -> dict[str, Any]:
    return {
        "rule": "r",
        "master_account_id": 1,
        "follower_account_id": 2,
        "key": key,
        "status": status,
    }


async def test_copy_path_writes_reach_sqlite_later_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cmamd.state.write_behind.LOG_KEEP_BYTES", 0)
    with StateStore.open(tmp_path) as store:
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        store.record_intent(link("p1"), "i1", 2, "p1", "open", "cm-1", {"volume": 100})
        writes = [sql for sql in statements if not sql.startswith("SELECT")]
        assert writes == [], "the write before the order is sent must not touch sqlite"
        store.put_link(link("p1", "open"))
        store.journal_outcome("i1", "done", "")
        await wait_until(lambda: "COMMIT" in statements, 5)
        store._conn.set_trace_callback(None)
        assert [sql for sql in statements if sql in ("BEGIN IMMEDIATE", "COMMIT")] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]
        assert (tmp_path / LOG_NAME).stat().st_size == 0  # caught up, past LOG_KEEP_BYTES


async def test_reads_see_every_write_made_before_them(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        for n in range(200):
            store.record_intent(link(f"p{n}"), f"i{n}", 2, f"p{n}", "open", None, {})
            if n % 2:
                store.journal_outcome(f"i{n}", "done", "")
        assert len(store.links()) == 200
        assert [e.intent_id for e in store.open_intents()] == [f"i{n}" for n in range(0, 200, 2)]
        with pytest.raises(StateError, match="already settled"):
            store.journal_outcome("i199", "rejected", "")


def test_the_op_log_is_private_and_emptied_by_a_clean_close(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with StateStore.open(tmp_path) as store:
        store.put_link(link("p1"))
        store.flush()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_size > 0  # kept until it grows past LOG_KEEP_BYTES
    assert path.stat().st_size == 0


def _log_line(seq: int, statements: list[tuple[str, list[Any]]]) -> bytes:
    return json.dumps([seq, statements]).encode() + b"\n"


def _meta_statement(key: str, value: str) -> tuple[str, list[Any]]:
    return ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])


def test_open_applies_what_the_log_holds_past_the_applied_mark(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.put_link(link("p0"))
        store.set_meta("a", "applied")
        store.flush()
        applied = int(store.get_meta(APPLIED_KEY) or 0)
    (tmp_path / LOG_NAME).write_bytes(
        _log_line(applied, [_meta_statement("a", "stale: already applied")])
        + _log_line(applied + 1, [_meta_statement("b", "replayed")])
        + b'[99, [["INSERT INTO meta'  # the write a kill cut short: never acknowledged
    )
    with StateStore.open(tmp_path) as store:
        assert store.get_meta("a") == "applied"
        assert store.get_meta("b") == "replayed"
        assert store.get_meta(APPLIED_KEY) == str(applied + 1)
        store.put_link(link("p1"))  # numbering goes on from the replayed op
        store.flush()
        assert store.get_meta(APPLIED_KEY) == str(applied + 2)
    assert (tmp_path / LOG_NAME).stat().st_size == 0


def test_a_corrupt_line_before_the_last_refuses_the_open(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    (tmp_path / LOG_NAME).write_bytes(b"garbage\n" + _log_line(1, [_meta_statement("b", "x")]))
    with pytest.raises(StateError, match="line 1 is corrupt"):
        StateStore.open(tmp_path)


def test_a_failed_write_stops_the_store_and_is_kept_for_the_next_start(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    try:
        store._conn.execute("ALTER TABLE links RENAME TO links_gone")
        with pytest.raises(StateError, match="writer stopped"):
            store.put_link(link("p1"))  # no event loop: applied at once
        with pytest.raises(StateError, match="writer stopped"):
            store.put_link(link("p2"))
        store._conn.execute("ALTER TABLE links_gone RENAME TO links")
    finally:
        store.close()
    with StateStore.open(tmp_path) as store:
        assert store.get_link("r", 1, 2, "p1") == link("p1")


def test_remembered_outcomes_are_bounded_and_older_ones_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cmamd.state.store.RECENT_INTENTS", 8)
    with StateStore.open(tmp_path) as store:
        for n in range(100):
            store.record_intent(None, f"i{n}", 2, f"p{n}", "open", None, {})
            store.journal_outcome(f"i{n}", "done" if n == 0 else "unknown", "")
        store.flush()
        store.put_link(link("p1"))  # one more batch: the writer trims after applying
        store.flush()
        assert len(store._pending_intents) <= 8 + 1
        with pytest.raises(StateError, match="already settled"):
            store.journal_outcome("i0", "rejected", "")
        store.journal_outcome("i1", "resolved", "")  # "unknown", read from sqlite
        with pytest.raises(StateError, match="no journaled intent"):
            store.journal_outcome("nope", "done", "")


async def test_a_write_lock_held_by_another_process_is_waited_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cmamd.state.write_behind.LOCKED_RETRY_S", 0.05)
    with StateStore.open(tmp_path) as store:
        store._conn.execute("PRAGMA busy_timeout = 0")  # sqlite's own 5 s wait, cut short
        other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # as `cmamd auth` storing tokens
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        store.put_link(link("p1"))
        await wait_until(lambda: "BEGIN IMMEDIATE" in statements, 5)  # met the lock
        store._conn.set_trace_callback(None)
        assert (tmp_path / LOG_NAME).stat().st_size > 0
        with pytest.raises(StateError, match="locked"):
            store.flush()
        other.execute("COMMIT")
        other.close()
        await wait_until(lambda: not store._writer._queue, 5)  # retried a moment later
        assert store.get_link("r", 1, 2, "p1") == link("p1")


def test_the_log_of_a_deleted_database_is_dropped(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    (tmp_path / LOG_NAME).write_bytes(_log_line(1, [_meta_statement("b", "x")]))
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with StateStore.open(tmp_path) as store:
        assert store.get_meta("b") is None
    assert (tmp_path / LOG_NAME).stat().st_size == 0

"""The state file holds live OAuth tokens: only the daemon's user may read it."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmamd.state import StateError, StateStore, StoredTokens
from cmamd.state.schema import MIGRATIONS
from cmamd.state.store import DB_NAME


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("process_umask", [0o000, 0o022, 0o077, 0o277])
def test_files_are_private_whatever_the_umask(tmp_path: Path, process_umask: int) -> None:
    os.umask(process_umask)
    state_dir = tmp_path / "var" / "lib" / "cmamd"
    with StateStore.open(state_dir) as store:
        store.put_tokens(1, StoredTokens("access-token-1", "refresh-token-1"))
        names = {p.name for p in state_dir.iterdir()}
        assert {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "cmamd.lock"} <= names
        assert mode(state_dir) == 0o700
        for name in names:
            assert mode(state_dir / name) == 0o600, name


def test_a_loose_database_file_is_tightened(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).touch()
    os.chmod(tmp_path / DB_NAME, 0o644)
    StateStore.open(tmp_path).close()
    assert mode(tmp_path / DB_NAME) == 0o600


def test_an_existing_directory_is_used_as_it_is(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o750)
    StateStore.open(tmp_path).close()
    assert mode(tmp_path) == 0o750
    assert mode(tmp_path / DB_NAME) == 0o600


# --- schema migrations -------------------------------------------------------------------


def schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {name for (name,) in rows}
    finally:
        conn.close()


def test_a_new_database_gets_the_whole_schema(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    assert schema_version(tmp_path / DB_NAME) == len(MIGRATIONS)
    assert {"schema_version", "tokens", "links", "journal", "meta"} <= tables(tmp_path / DB_NAME)


NEXT_MIGRATION = """
ALTER TABLE links ADD COLUMN note TEXT;
UPDATE links SET note = 'migrated';
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def test_an_old_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    record = {
        "rule": "r",
        "master_account_id": 1,
        "follower_account_id": 2,
        "key": "k",
        "status": "open",
    }
    with StateStore.open(tmp_path) as store:
        store.put_link(record)
        store.put_tokens(1, StoredTokens("access-token-1", "refresh-token-1"))
    with StateStore.open(tmp_path, migrations=(*MIGRATIONS, NEXT_MIGRATION)) as store:
        assert store.get_link("r", 1, 2, "k") == record
        assert store.get_tokens(1) is not None
        assert store._conn.execute("SELECT note FROM links").fetchall() == [("migrated",)]
    assert schema_version(tmp_path / DB_NAME) == len(MIGRATIONS) + 1
    assert "counters" in tables(tmp_path / DB_NAME)


def test_a_hand_made_version_0_file_is_brought_up_to_date(tmp_path: Path) -> None:
    # A database that only has the bookkeeping table, as a crash during the very first
    # migration leaves it.
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.commit()
    conn.close()
    with StateStore.open(tmp_path) as store:
        store.set_meta("k", "v")
    assert schema_version(tmp_path / DB_NAME) == len(MIGRATIONS)


def test_a_failing_migration_leaves_the_database_at_its_old_version(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    broken = "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    with pytest.raises(sqlite3.OperationalError):
        StateStore.open(tmp_path, migrations=(*MIGRATIONS, broken))
    assert schema_version(tmp_path / DB_NAME) == len(MIGRATIONS)
    assert "half_done" not in tables(tmp_path / DB_NAME)
    # The failed open released its lock and connection.
    StateStore.open(tmp_path).close()


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    StateStore.open(tmp_path, migrations=(*MIGRATIONS, NEXT_MIGRATION)).close()
    with pytest.raises(StateError, match="newer"):
        StateStore.open(tmp_path)
    assert schema_version(tmp_path / DB_NAME) == len(MIGRATIONS) + 1

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmamd.state import (
    CLOSED_LINK_STATUS,
    DuplicateIntent,
    StateError,
    StateLocked,
    StateStore,
    StoredTokens,
)


class FakeClock:
    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state", clock_ms=clock) as opened:
        yield opened


def link(key: str = "pos:1", status: str = "open", **extra: Any) -> dict[str, Any]:
    return {
        "rule": extra.pop("rule", "mirror"),
        "master_account_id": extra.pop("master_account_id", 100),
        "follower_account_id": extra.pop("follower_account_id", 200),
        "key": key,
        "status": status,
        **extra,
    }


# --- tokens ------------------------------------------------------------------------------


def test_tokens_round_trip_with_the_store_stamping_the_update_time(
    store: StateStore, clock: FakeClock
) -> None:
    assert store.get_tokens(7) is None
    stored = store.put_tokens(7, StoredTokens("acc-1", "ref-1", expires_at_ms=5_000))
    assert stored == StoredTokens("acc-1", "ref-1", 5_000, clock.now_ms)
    assert store.get_tokens(7) == stored
    assert store.get_tokens(8) is None


def test_new_tokens_replace_the_old_pair(store: StateStore, clock: FakeClock) -> None:
    store.put_tokens(7, StoredTokens("acc-1", "ref-1", 5_000))
    clock.now_ms += 1_000
    store.put_tokens(7, StoredTokens("acc-2", "ref-2", None))
    assert store.get_tokens(7) == StoredTokens("acc-2", "ref-2", None, clock.now_ms)


def test_a_given_update_time_is_kept(store: StateStore) -> None:
    stored = store.put_tokens(7, StoredTokens("acc-1", "ref-1", None, updated_ms=42))
    assert stored.updated_ms == 42
    assert store.get_tokens(7) == stored


def test_a_token_group_rotates_together(store: StateStore, clock: FakeClock) -> None:
    old = StoredTokens("acc-old", "ref-shared", 5_000)
    store.put_tokens_many({1: old, 2: old, 3: StoredTokens("acc-x", "ref-other")})
    assert store.accounts_with_refresh_token("ref-shared") == [1, 2]
    new = StoredTokens("acc-new", "ref-new", 9_000)
    stored = store.put_tokens_many({1: new, 2: new})
    expected = StoredTokens("acc-new", "ref-new", 9_000, clock.now_ms)
    assert stored == {1: expected, 2: expected}
    assert store.accounts_with_refresh_token("ref-shared") == []
    assert store.accounts_with_refresh_token("ref-new") == [1, 2]
    assert store.get_tokens(3) == StoredTokens("acc-x", "ref-other", None, clock.now_ms)


def test_a_group_write_is_all_or_nothing(store: StateStore) -> None:
    store.put_tokens_many({1: StoredTokens("acc-1", "ref-1"), 2: StoredTokens("acc-2", "ref-1")})
    broken = StoredTokens(None, "ref-2")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.put_tokens_many({1: StoredTokens("acc-3", "ref-2"), 2: broken})
    assert store.accounts_with_refresh_token("ref-1") == [1, 2]


def test_token_repr_hides_the_tokens() -> None:
    tokens = StoredTokens("access-value-123", "refresh-value-456", 5_000, 9)
    for text in (repr(tokens), str(tokens), f"{tokens}", repr([tokens])):
        assert "access-value-123" not in text and "refresh-value-456" not in text
        assert "expires_at_ms=5000" in text


# --- links -------------------------------------------------------------------------------


def test_link_round_trip_keeps_the_whole_record(store: StateStore) -> None:
    record = link(follower_position_id=None, volume=150_000, history=[{"ts": 1}], ratio=1.5)
    store.put_link(record)
    assert store.get_link("mirror", 100, 200, "pos:1") == record
    assert store.get_link("mirror", 100, 200, "pos:2") is None
    assert store.get_link("other", 100, 200, "pos:1") is None


def test_putting_a_link_again_updates_it(store: StateStore) -> None:
    store.put_link(link(volume=1))
    store.put_link(link(status="filled", volume=2))
    assert store.get_link("mirror", 100, 200, "pos:1") == link(status="filled", volume=2)
    assert len(store.links()) == 1


def test_links_filter_by_rule_master_and_follower(store: StateStore) -> None:
    records = [
        link("a"),
        link("b", follower_account_id=201),
        link("c", master_account_id=101),
        link("d", rule="scaled"),
        link("e", status=CLOSED_LINK_STATUS),
    ]
    for record in reversed(records):
        store.put_link(record)

    def keys(found: list[dict[str, Any]]) -> list[str]:
        return [record["key"] for record in found]

    assert keys(store.links()) == ["a", "b", "c", "d"]
    # Identity order: rule, master, follower, key.
    assert keys(store.links(include_closed=True)) == ["a", "e", "b", "c", "d"]
    assert keys(store.links(rule="mirror")) == ["a", "b", "c"]
    assert keys(store.links(master_id=100)) == ["a", "b", "d"]
    assert keys(store.links(follower_id=201)) == ["b"]
    assert keys(store.links(rule="mirror", master_id=100, follower_id=200)) == ["a"]
    assert keys(store.links(rule="mirror", follower_id=200, include_closed=True)) == [
        "a",
        "e",
        "c",
    ]


def test_housekeeping_deletes_only_old_closed_links(store: StateStore, clock: FakeClock) -> None:
    store.put_link(link("old-closed", status=CLOSED_LINK_STATUS))
    store.put_link(link("old-open"))
    clock.now_ms += 10_000
    store.put_link(link("new-closed", status=CLOSED_LINK_STATUS))
    assert store.delete_closed_links(older_than_ms=clock.now_ms) == 1
    assert [r["key"] for r in store.links(include_closed=True)] == ["new-closed", "old-open"]


@pytest.mark.parametrize(
    "bad",
    [
        {k: v for k, v in link().items() if k != "status"},
        {k: v for k, v in link().items() if k != "key"},
        link(master_account_id="100"),
        link(follower_account_id=True),
        {**link(), "key": 5},
        link(unstorable=object()),
        link(price=float("nan")),
    ],
)
def test_malformed_links_are_refused_and_nothing_is_written(
    store: StateStore, bad: dict[str, Any]
) -> None:
    with pytest.raises(StateError):
        store.put_link(bad)
    assert store.links(include_closed=True) == []


# --- journal -----------------------------------------------------------------------------


def intent(store: StateStore, intent_id: str, follower_id: int = 200, key: str = "pos:1") -> None:
    store.journal_intent(intent_id, follower_id, key, "open", f"cm-{intent_id}", {"volume": 1})


def test_intent_is_open_until_settled(store: StateStore, clock: FakeClock) -> None:
    intent(store, "i1")
    intent(store, "i2")
    [first, second] = store.open_intents()
    assert (first.intent_id, first.follower_id, first.key) == ("i1", 200, "pos:1")
    assert first.action == "open"
    assert first.client_order_id == "cm-i1"
    assert first.payload == {"volume": 1}
    assert first.created_ms == clock.now_ms
    assert first.outcome is None and first.is_open
    assert second.intent_id == "i2"

    clock.now_ms += 5
    store.journal_outcome("i1", "done", "position 77")
    assert [e.intent_id for e in store.open_intents()] == ["i2"]
    [latest, settled] = store.journal()
    assert latest.intent_id == "i2"
    assert (settled.outcome, settled.detail) == ("done", "position 77")
    assert settled.settled_ms == clock.now_ms
    assert not settled.is_open


def test_unknown_outcome_stays_open_until_resolved(store: StateStore) -> None:
    intent(store, "i1")
    store.journal_outcome("i1", "unknown", "timeout after send")
    [entry] = store.open_intents()
    assert (entry.outcome, entry.detail) == ("unknown", "timeout after send")
    store.journal_outcome("i1", "resolved", "reconcile found position 77")
    assert store.open_intents() == []


@pytest.mark.parametrize("final", ["done", "rejected", "resolved"])
def test_a_settled_outcome_is_final(store: StateStore, final: str) -> None:
    intent(store, "i1")
    store.journal_outcome("i1", final, "first")
    with pytest.raises(StateError):
        store.journal_outcome("i1", "unknown", "second")
    assert store.journal()[0].detail == "first"


def test_outcome_of_an_unknown_intent_or_an_invalid_outcome_is_refused(store: StateStore) -> None:
    with pytest.raises(StateError):
        store.journal_outcome("nope", "done", "")
    intent(store, "i1")
    with pytest.raises(ValueError):
        store.journal_outcome("i1", "maybe", "")
    assert store.open_intents()[0].outcome is None


def test_an_intent_cannot_be_journaled_twice(store: StateStore) -> None:
    intent(store, "i1")
    with pytest.raises(DuplicateIntent):
        intent(store, "i1", key="other")
    assert len(store.journal()) == 1


def test_record_intent_writes_link_and_journal_together(store: StateStore) -> None:
    store.record_intent(link(status="opening"), "i1", 200, "pos:1", "open", "cm-1", {"v": 1})
    assert store.get_link("mirror", 100, 200, "pos:1") == link(status="opening")
    assert [e.intent_id for e in store.open_intents()] == ["i1"]


def test_record_intent_without_a_link_journals_only(store: StateStore) -> None:
    store.record_intent(None, "i1", 200, "pos:1", "cancel", None, {"order_id": 5})
    assert store.links(include_closed=True) == []
    assert [(e.intent_id, e.payload) for e in store.open_intents()] == [("i1", {"order_id": 5})]


def test_record_intent_is_all_or_nothing(store: StateStore) -> None:
    store.record_intent(link(status="opening"), "i1", 200, "pos:1", "open", "cm-1", {"v": 1})
    with pytest.raises(DuplicateIntent):
        store.record_intent(link(status="closing"), "i1", 200, "pos:1", "close", None, {})
    assert store.get_link("mirror", 100, 200, "pos:1") == link(status="opening")
    with pytest.raises(StateError):
        store.record_intent(link(status="closing"), "i2", 200, "pos:1", "close", None, {"x": {1}})
    assert store.get_link("mirror", 100, 200, "pos:1") == link(status="opening")
    assert [e.intent_id for e in store.journal()] == ["i1"]


def test_journal_lists_newest_first_per_follower_with_a_limit(store: StateStore) -> None:
    for n in range(6):
        intent(store, f"i{n}", follower_id=200 + n % 2)
    assert [e.intent_id for e in store.journal()] == ["i5", "i4", "i3", "i2", "i1", "i0"]
    assert [e.intent_id for e in store.journal(follower_id=201)] == ["i5", "i3", "i1"]
    assert [e.intent_id for e in store.journal(limit=2)] == ["i5", "i4"]
    assert [e.intent_id for e in store.journal(follower_id=200, limit=1)] == ["i4"]


def test_pruning_the_journal_keeps_open_and_recent_entries(
    store: StateStore, clock: FakeClock
) -> None:
    for name in ("old-done", "old-unknown", "pending", "new-done"):
        intent(store, name)
    store.journal_outcome("old-done", "done", "")
    store.journal_outcome("old-unknown", "unknown", "")
    clock.now_ms += 10_000
    store.journal_outcome("new-done", "done", "")
    assert store.prune_journal(older_than_ms=clock.now_ms) == 1
    assert sorted(e.intent_id for e in store.journal()) == ["new-done", "old-unknown", "pending"]


# --- meta, persistence, exclusivity --------------------------------------------------------


def test_meta_round_trip(store: StateStore) -> None:
    assert store.get_meta("follower:200:start_ms") is None
    store.set_meta("follower:200:start_ms", "1700000000000")
    store.set_meta("follower:200:start_ms", "1700000000001")
    assert store.get_meta("follower:200:start_ms") == "1700000000001"


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.put_tokens(1, StoredTokens("a" * 10, "r" * 10, 99))
        store.record_intent(link(), "i1", 200, "pos:1", "open", "cm-1", {"volume": 100})
        store.journal_outcome("i1", "unknown", "no answer")
        store.set_meta("k", "v")
    with StateStore.open(tmp_path) as store:
        tokens = store.get_tokens(1)
        assert tokens is not None and tokens.refresh_token == "r" * 10
        assert store.get_link("mirror", 100, 200, "pos:1") == link()
        assert [(e.intent_id, e.outcome) for e in store.open_intents()] == [("i1", "unknown")]
        assert store.get_meta("k") == "v"


def test_a_second_open_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = StateStore.open(tmp_path)
    try:
        with pytest.raises(StateLocked):
            StateStore.open(tmp_path)
    finally:
        first.close()
    StateStore.open(tmp_path).close()


def test_connection_runs_in_wal_with_normal_sync_and_foreign_keys(store: StateStore) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: survives kill -9
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_token_writes_are_fsynced_and_the_rest_is_not(store: StateStore) -> None:
    # sqlite reports the level in force; tokens are committed with FULL, then back to NORMAL
    levels: list[int] = []
    conn = store._conn
    conn.set_trace_callback(
        lambda sql: (
            levels.append(conn.execute("PRAGMA synchronous").fetchone()[0])
            if sql.startswith("INSERT INTO tokens")
            else None
        )
    )
    try:
        store.put_tokens(1, StoredTokens("a", "r"))
    finally:
        conn.set_trace_callback(None)
    assert levels == [2]  # FULL while the token row is written and committed
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_close_is_idempotent(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    store.close()
    store.close()


def test_delete_links_forgets_exactly_the_given_identities(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        for key in ("p1", "p2"):
            store.put_link(
                {
                    "rule": "r",
                    "master_account_id": 1,
                    "follower_account_id": 2,
                    "key": key,
                    "status": "closed",
                }
            )
        assert store.delete_links([("r", 1, 2, "p1"), ("r", 1, 3, "p2")]) == 1
        assert [r["key"] for r in store.links(include_closed=True)] == ["p2"]


def test_finished_links_of_destinations_no_longer_configured_are_forgotten(
    tmp_path: Path,
) -> None:
    with StateStore.open(tmp_path) as store:
        for rule, key, status in (
            ("kept", "p1", "closed"),
            ("gone", "p1", "closed"),
            ("gone", "p2", "open"),
        ):
            store.put_link(
                {
                    "rule": rule,
                    "master_account_id": 1,
                    "follower_account_id": 2,
                    "key": key,
                    "status": status,
                }
            )
        far_future = 2**62
        assert store.delete_finished_links_except([("kept", 1, 2)], far_future) == 1
        left = [(r["rule"], r["status"]) for r in store.links(include_closed=True)]
        assert sorted(left) == [("gone", "open"), ("kept", "closed")]

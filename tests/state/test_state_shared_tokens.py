"""Token rows written from outside the daemon: next to a store a daemon holds open, or
creating one; read-only views for `cmamd accounts`."""

from __future__ import annotations

import stat
from pathlib import Path

from cmamd.state.shared_tokens import read_view, reauth_key, store_pairs, tokens_for
from cmamd.state.store import DB_NAME, StateStore, StoredTokens

PAIR = StoredTokens("access-new", "refresh-new", 1_900_000_000_000, 0)


def test_written_next_to_a_running_daemon_which_sees_it_at_once(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as daemon_store:  # holds the directory lock
        daemon_store.put_tokens(7, StoredTokens("access-old", "refresh-old", None, 0))
        daemon_store.set_meta(reauth_key(7), '{"reason": "refused"}')
        store_pairs(tmp_path, {7: PAIR, 8: PAIR}, {7: {"broker": "B", "login": 5}})
        seen = daemon_store.get_tokens(7)
        assert seen is not None and (seen.access_token, seen.refresh_token) == (
            "access-new",
            "refresh-new",
        )
        assert seen.updated_ms > 0
        assert daemon_store.get_meta(reauth_key(7)) == ""  # the mark is cleared
        daemon_store.put_tokens(9, PAIR)  # and the daemon still writes afterwards
    view = read_view(tmp_path)
    assert set(view.tokens) == {7, 8, 9} and view.needs_reauth == {}
    assert view.info == {7: {"broker": "B", "login": 5}}


def test_creates_a_private_store_when_there_is_none(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert read_view(state).tokens == {}
    store_pairs(state, {7: PAIR})
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / DB_NAME).stat().st_mode) == 0o600
    stored = tokens_for(state, 7)
    assert stored is not None and stored.refresh_token == "refresh-new"
    with StateStore.open(state) as store:  # a daemon opens it as its own afterwards
        assert store.get_tokens(7) is not None


def test_marks_are_read_without_secrets(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.put_tokens(7, PAIR)
        store.set_meta(reauth_key(7), '{"reason": "refresh token refused", "at_ms": 1}')
    view = read_view(tmp_path)
    assert view.needs_reauth == {7: "refresh token refused"}
    assert "access-new" not in repr(view) and "refresh-new" not in repr(view)

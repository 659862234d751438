from __future__ import annotations

from dataclasses import dataclass

from cmamd.accounts.merge import EndedItems, is_stale, merge_snapshot


@dataclass(frozen=True)
class Item:
    name: str
    updated_ms: int


def test_a_snapshot_keeps_what_events_changed_while_it_was_in_flight() -> None:
    current = {2: Item("amended by an event", 20), 3: Item("opened by an event", 30)}
    snapshot = {1: Item("closed by an event", 10), 2: Item("old", 15), 4: Item("other", 5)}
    merged = merge_snapshot(current, snapshot, touched={1, 2, 3})
    assert merged == {2: current[2], 3: current[3], 4: snapshot[4]}


def test_the_snapshot_wins_where_it_is_newer_and_where_no_event_touched_the_item() -> None:
    current = {1: Item("event", 10), 5: Item("lost: closed while away", 1)}
    snapshot = {1: Item("newer", 11)}
    assert merge_snapshot(current, snapshot, touched={1}) == {1: snapshot[1]}


def test_stale_versions_and_ended_items() -> None:
    assert is_stale(Item("known", 10), Item("older", 9))
    assert not is_stale(Item("known", 10), Item("same ms", 10))
    assert not is_stale(Item("known", 10), Item("no timestamp", 0))
    assert not is_stale(None, Item("new", 1))
    ended = EndedItems(capacity=2)
    for key in ("p1", "p2", "p3"):
        ended.add(key)
    assert "p1" not in ended and "p2" in ended and "p3" in ended

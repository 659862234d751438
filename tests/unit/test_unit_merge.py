from __future__ import annotations

from dataclasses import dataclass

from cmamd.accounts.merge import merge_snapshot


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

"""Keeping an account's cached positions and orders monotonic (pure functions).

Two sources update the cache: execution events, one item at a time, and reconcile
snapshots, all items at once. Neither may take the cache back in time:

- an event older than what is known for its item (``utcLastUpdateTimestamp``), or about an
  item already known to have ended (a closed position, a filled or cancelled order), is
  stale or replayed and is refused before it is applied (``wire_guard``);
- a reconcile snapshot is merged with the events that arrived while it was in flight, not
  written over them: an item such an event touched keeps the newer of the two versions,
  and an item it ended stays ended (a position never reopens, an order never comes back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar


class Versioned(Protocol):
    @property
    def updated_ms(self) -> int: ...


T = TypeVar("T", bound=Versioned)


def merge_snapshot(
    current: Mapping[int, T], snapshot: Mapping[int, T], touched: set[int]
) -> dict[int, T]:
    """The snapshot, except for items events touched while it was in flight.

    For those, ``current`` holds what the events made of them: absent means an event ended
    the item (it stays ended), present means it is newer than the snapshot unless the
    snapshot's version carries a later timestamp.
    """
    merged = {item_id: item for item_id, item in snapshot.items() if item_id not in touched}
    for item_id in touched:
        now = current.get(item_id)
        if now is None:
            continue
        snap = snapshot.get(item_id)
        merged[item_id] = snap if snap is not None and snap.updated_ms > now.updated_ms else now
    return merged

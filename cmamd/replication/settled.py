"""Items whose copy decision is over (closed, skipped, rejected), remembered durably.

A settled item must never be decided again: a copy closed by hand, by its own stop or
because its remainder fell below the symbol minimum, a pending copy cancelled on the
follower, a trade skipped by a filter — none of them is reopened by a restart, a stale or
replayed master event, or a reconcile. So their links are loaded at start-up, kept apart
from the live links (every plan walks those, so they stay small), and handed to the
planner whenever a key has no live link.

Bounded: a settled link is forgotten (in memory and in the store) only once its master
item is gone AND it has been settled longer than the retention period, so that no late
event for the item can still arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from cmamd.replication.links import Link
from cmamd.state.store import StateStore

MasterHas = Callable[[str, str], bool | None]
"""(route id, key) -> whether the master holds the item; None when its state is unknown."""


class SettledItems:
    """Settled links by destination and key."""

    def __init__(self) -> None:
        self._by_dest: dict[str, dict[str, Link]] = {}

    def load(self, dest_id: str, links: Iterable[Link]) -> None:
        self._by_dest[dest_id] = {link.key: link for link in links if not link.active}

    def drop_destination(self, dest_id: str) -> None:
        self._by_dest.pop(dest_id, None)

    def get(self, dest_id: str, key: str) -> Link | None:
        found = self._by_dest.get(dest_id)
        return None if found is None else found.get(key)

    def remember(self, dest_id: str, link: Link) -> None:
        self._by_dest.setdefault(dest_id, {})[link.key] = link

    def forget(self, dest_id: str, key: str) -> None:
        found = self._by_dest.get(dest_id)
        if found is not None:
            found.pop(key, None)

    def __len__(self) -> int:
        return sum(len(links) for links in self._by_dest.values())

    def expired(self, cutoff_ms: int, master_has: MasterHas) -> list[tuple[str, Link]]:
        """Links settled before ``cutoff_ms`` whose master item is known to be gone.

        ``master_has(dest_id, key)``: True/False, or None when the master's state is not
        known (not ready): then nothing of it is pruned.
        """
        found: list[tuple[str, Link]] = []
        for dest_id, links in self._by_dest.items():
            for key, link in links.items():
                if link.updated_ms < cutoff_ms and master_has(dest_id, key) is False:
                    found.append((dest_id, link))
        return found


def prune(
    store: StateStore,
    settled: SettledItems,
    configured: Collection[tuple[str, int, int]],
    cutoff_ms: int,
    master_has: MasterHas,
) -> int:
    """Housekeeping: forget settled links older than ``cutoff_ms`` whose master item is
    gone, and finished links of destinations no longer ``configured`` (rule, master id,
    follower id). Returns how many links were deleted."""
    deleted = store.delete_finished_links_except(configured, cutoff_ms)
    expired = settled.expired(cutoff_ms, master_has)
    if expired:
        deleted += store.delete_links(
            [(x.rule, x.master_account_id, x.follower_account_id, x.key) for _, x in expired]
        )
        for dest_id, link in expired:
            settled.forget(dest_id, link.key)
    return deleted

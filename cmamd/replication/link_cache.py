"""The replicator's memory of the store: links per route, settled items, and origins.

Planning reads no disk: every link and origin is held here and written through to the
store when it changes. Live links (items still open, or being settled) are what plans
walk; finished ones move to :class:`SettledItems` once their master item is gone, where
they are only looked up by key.

Origins (``p<P>`` -> the ``o<O>`` that opened P, from the master's fill events) are kept
for masters only and forgotten once their position is gone from the master and no route
holds a live link for it, so they stay bounded by the positions open on the masters.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from cmamd.accounts.model import AccountState
from cmamd.item_keys import ItemKind, is_position_key, parse_key, split_key
from cmamd.replication import settled
from cmamd.replication.links import Link
from cmamd.replication.origins import LinkOrigins
from cmamd.replication.settled import SettledItems
from cmamd.state.store import StateStore

ORIGIN_PREFIX = "origin:"


def origin_meta_key(master_id: int, position_key: str) -> str:
    return f"{ORIGIN_PREFIX}{master_id}:{position_key}"


def holds_item(state: AccountState, key: str) -> bool:
    kind, item_id = split_key(key)
    items = state.positions if kind is ItemKind.POSITION else state.orders
    return item_id in items


class LinkCache:
    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._live: dict[str, dict[str, Link]] = {}
        self._link_origins: dict[str, LinkOrigins] = {}  # what each route's live links say
        self._settled = SettledItems()
        self._origins: dict[int, dict[str, str]] = {}

    # routes ----------------------------------------------------------------------------
    def load_route(self, route_id: str, rule: str, master_id: int, follower_id: int) -> None:
        """Load a route's links (and its master's origins) unless they are held already."""
        if route_id not in self._live:
            stored = self._store.links(
                rule=rule, master_id=master_id, follower_id=follower_id, include_closed=True
            )
            loaded = [Link.from_dict(d) for d in stored]
            self._live[route_id] = {link.key: link for link in loaded if link.active}
            self._link_origins[route_id] = LinkOrigins.of(self._live[route_id].values())
            self._settled.load(route_id, loaded)
        if master_id not in self._origins:
            prefix = origin_meta_key(master_id, "")
            self._origins[master_id] = {
                key[len(prefix) :]: value
                for key, value in self._store.meta_items(prefix).items()
                if is_position_key(key[len(prefix) :]) and parse_key(value) is not None
            }

    def drop_route(self, route_id: str) -> None:
        self._live.pop(route_id, None)
        self._link_origins.pop(route_id, None)
        self._settled.drop_destination(route_id)

    def keep_masters(self, master_ids: Collection[int]) -> None:
        """Forget the origins of accounts that are no longer a master of any route."""
        for gone in set(self._origins) - set(master_ids):
            del self._origins[gone]

    # links -----------------------------------------------------------------------------
    def live(self, route_id: str) -> Mapping[str, Link]:
        return self._live.get(route_id, {})

    def _put_live(self, route_id: str, link: Link) -> None:
        live = self._live.setdefault(route_id, {})
        old = live.get(link.key)
        live[link.key] = link
        self._link_origins.setdefault(route_id, LinkOrigins()).changed(old, link)

    def lookup(self, route_id: str, key: str) -> tuple[Link | None, bool]:
        """The key's link, and whether it came from the settled ones."""
        link = self._live.get(route_id, {}).get(key)
        if link is not None:
            return link, False
        link = self._settled.get(route_id, key)
        return link, link is not None

    def link_of(self, route_id: str, key: str) -> Link | None:
        return self.lookup(route_id, key)[0]

    def hold(self, route_id: str, link: Link) -> None:
        """Hold a link the caller has just written to the store (with its journal entry)."""
        self._put_live(route_id, link)

    def save(self, route_id: str, link: Link) -> None:
        self._store.put_link(link.to_dict())
        self._put_live(route_id, link)

    def unsettle(self, route_id: str, key: str) -> None:
        """A settled item decided anew (copies found and adopted)."""
        self._settled.forget(route_id, key)

    def forget_if_done(
        self, route_id: str, key: str, link: Link | None, master: AccountState
    ) -> None:
        """Move a finished item's link from the live links to the settled ones.

        Without this the live links, and every plan's walk over them, grow with the history
        of all trades ever copied; the settled ones are only looked up by key.
        """
        if link is None or link.active or holds_item(master, key):
            return
        old = self._live.get(route_id, {}).pop(key, None)
        if old is not None:
            self._link_origins[route_id].changed(old, None)
        self._settled.remember(route_id, link)

    @property
    def live_count(self) -> int:
        return sum(len(links) for links in self._live.values())

    def prune_settled(
        self,
        configured: Collection[tuple[str, int, int]],
        cutoff_ms: int,
        master_has: settled.MasterHas,
    ) -> int:
        return settled.prune(self._store, self._settled, configured, cutoff_ms, master_has)

    # origins ---------------------------------------------------------------------------
    def origins(self, master_id: int) -> dict[str, str]:
        return self._origins.get(master_id, {})

    def route_origins(self, route_id: str, master_id: int, master: AccountState) -> dict[str, str]:
        """Every origin for planning one of the route's keys (origins.py)."""
        link_origins = self._link_origins.get(route_id) or LinkOrigins()
        return link_origins.merged(master, self._origins.get(master_id))

    def add_origins(self, master_id: int, found: Mapping[str, str]) -> None:
        """Origins seen in a master's fill events; held now, written through by ``persist``."""
        self._origins.setdefault(master_id, {}).update(found)

    def persist_origins(self, master_id: int, found: Mapping[str, str]) -> None:
        for position_key, order_key in found.items():
            self._store.set_meta(origin_meta_key(master_id, position_key), order_key)

    def prune_origins(
        self, master_id: int, master: AccountState, routes: Iterable[str]
    ) -> list[str]:
        """Forget origins of positions gone from ``master`` (whose state is complete) that
        no route of it (``routes``) still holds a live link for. Returns their keys."""
        held = self._origins.get(master_id)
        if not held:
            return []
        route_ids = list(routes)
        gone = [
            key
            for key in held
            if not holds_item(master, key)
            and not any(key in self._live.get(route_id, {}) for route_id in route_ids)
        ]
        for key in gone:
            del held[key]
        if gone:
            self._store.delete_meta([origin_meta_key(master_id, key) for key in gone])
        return gone

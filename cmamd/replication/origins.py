"""Which master pending order opened which master position: ``p<P>`` -> ``o<O>``.

Sources, weakest first: the master's pending orders (their position id), pending-order
links (``fill_key``, once that position exists: a cancelled or expired order handed
nothing over), position links (``origin_key``), then what fill events told (``known``).

What the links say is kept in a :class:`LinkOrigins` that follows each link change, so
planning one key costs the master's pending orders and the few links made from pending
orders, not a walk over every live link of the route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cmamd.accounts.model import AccountState
from cmamd.item_keys import is_order_key, is_position_key, order_key, parse_key, position_key
from cmamd.replication.links import Link
from cmamd.replication.plan_common import MARKET_KINDS


class LinkOrigins:
    """The origins a route's live links state, updated link by link."""

    def __init__(self) -> None:
        # position key -> (order key, position id): pending-order links' fill_key
        self._fills: dict[str, tuple[str, int]] = {}
        self._opened_by: dict[str, str] = {}  # position links' origin_key

    @classmethod
    def of(cls, links: Iterable[Link]) -> LinkOrigins:
        found = cls()
        for link in links:
            found.changed(None, link)
        return found

    def changed(self, old: Link | None, new: Link | None) -> None:
        """A live link ``old`` became ``new`` (None: it was not live / is no longer)."""
        if old is not None:
            if old.fill_key is not None and self._fills.get(old.fill_key, ("",))[0] == old.key:
                del self._fills[old.fill_key]
            if old.origin_key is not None and self._opened_by.get(old.key) == old.origin_key:
                del self._opened_by[old.key]
        if new is not None:
            if new.fill_key is not None and is_order_key(new.key):
                parsed = parse_key(new.fill_key)
                if parsed is not None:
                    self._fills[new.fill_key] = (new.key, parsed[1])
            if new.origin_key is not None and is_position_key(new.key):
                self._opened_by[new.key] = new.origin_key

    def merged(self, master: AccountState, known: Mapping[str, str] | None) -> dict[str, str]:
        """Every origin for planning against ``master``, strongest source last."""
        origins: dict[str, str] = {}
        positions = master.positions
        for order in master.orders.values():
            pid = order.position_id
            if pid and order.kind not in MARKET_KINDS and pid not in positions:
                origins[position_key(pid)] = order_key(order.order_id)
        for fill_key, (key, pid) in self._fills.items():
            if pid in positions:
                origins[fill_key] = key
        origins.update(self._opened_by)
        origins.update(known or {})
        return origins


def origins_for(
    master: AccountState, links: Iterable[Link], known: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``p<P>`` -> ``o<O>`` from the master, ``links`` (all of a target's) and ``known``."""
    return LinkOrigins.of(links).merged(master, known)

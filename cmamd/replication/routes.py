"""The configured copy routes, indexed by the accounts they read from and write to.

A route is one rule destination bound to a master and a follower account. The daemon
hands over the whole set on start and on every reload; an account's change then reaches
only the routes of that account (by master and by follower id), not every route.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from cmamd.replication.planner import CopyTarget
from cmamd.replication.queue import WorkKey


@dataclass(frozen=True, slots=True)
class CopyRoute:
    """A configured copy target with the names the logs use."""

    id: str  # "rule:master id:follower id"
    target: CopyTarget
    master: str
    follower: str

    @property
    def master_id(self) -> int:
        return self.target.master_account_id

    @property
    def follower_id(self) -> int:
        return self.target.follower_account_id

    def work(self, key: str) -> WorkKey:
        return (self.id, self.target.follower_account_id, key)


class RouteRegistry:
    def __init__(self) -> None:
        self._routes: dict[str, CopyRoute] = {}
        self._by_master: dict[int, list[CopyRoute]] = {}
        self._by_follower: dict[int, list[CopyRoute]] = {}

    def replace(self, routes: Iterable[CopyRoute], instance: str) -> list[str]:
        """Swap in a new route set (each target stamped with this daemon ``instance``);
        returns the ids of the routes that are gone."""
        new = {
            r.id: dataclasses.replace(r, target=dataclasses.replace(r.target, instance=instance))
            for r in routes
        }
        gone = [route_id for route_id in self._routes if route_id not in new]
        by_master: dict[int, list[CopyRoute]] = {}
        by_follower: dict[int, list[CopyRoute]] = {}
        for route in new.values():
            by_master.setdefault(route.master_id, []).append(route)
            by_follower.setdefault(route.follower_id, []).append(route)
        self._routes, self._by_master, self._by_follower = new, by_master, by_follower
        return gone

    def get(self, route_id: str) -> CopyRoute | None:
        return self._routes.get(route_id)

    def __iter__(self) -> Iterator[CopyRoute]:
        return iter(list(self._routes.values()))

    def __len__(self) -> int:
        return len(self._routes)

    def of_master(self, account_id: int) -> Sequence[CopyRoute]:
        return self._by_master.get(account_id, ())

    def of_follower(self, account_id: int) -> Sequence[CopyRoute]:
        return self._by_follower.get(account_id, ())

    def master_ids(self) -> frozenset[int]:
        return frozenset(self._by_master)

"""Account changes in, queue work out: the routes' fan-out.

An account's change reaches only its own routes (``routes.py`` indexes them by master and
by follower id): a master's changed items become one queue entry per route, a follower's
changed copies wake the master items they copy, and a full reconcile (resync) of either
side plans every key of its routes again. Origins seen in a master's fill events are held
at once and reach the store after the woken workers had their turn.

A master trade fanned out to many followers queues the first ``eager`` routes at once and
the rest on the loop's next turn: the woken workers send the first copies before the
other entries are even queued (pushing 1 000 costs more than planning and sending one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from cmamd.accounts.model import AccountState
from cmamd.accounts.session import AccountChange, AccountSession
from cmamd.item_keys import ItemKind, split_key
from cmamd.logs import get_logger
from cmamd.replication.labels import parse_label
from cmamd.replication.link_cache import LinkCache
from cmamd.replication.planner import keys_for
from cmamd.replication.queue import ReplicationQueue
from cmamd.replication.routes import CopyRoute, RouteRegistry

log = get_logger("cmamd.replication")

ResyncHook = Callable[[CopyRoute, list[str], dict[str, str]], None]
"""Called with a route's keys (and origins) on every resync while set (the audit)."""


class Intake:
    def __init__(
        self,
        sessions: Mapping[str, AccountSession],
        links: LinkCache,
        queue: ReplicationQueue,
        eager: int = 32,
    ) -> None:
        self._sessions = sessions
        self._links = links
        self._queue = queue
        self._eager = max(1, eager)
        self.routes = RouteRegistry()
        self.accepting = True  # False on shutdown: master changes no longer become work
        self.on_resync: ResyncHook | None = None

    def set_routes(self, routes: Iterable[CopyRoute], instance: str) -> list[CopyRoute]:
        """Swap the route set; drops what the gone routes held, loads the new ones' links.
        Returns the routes now configured (not yet resynced)."""
        for gone in self.routes.replace(routes, instance):
            self._queue.discard_destination(gone)
            self._links.drop_route(gone)
        current = list(self.routes)
        for route in current:
            t = route.target
            self._links.load_route(route.id, t.rule, route.master_id, route.follower_id)
        self._links.keep_masters(self.routes.master_ids())
        return current

    def resync(self, route_id: str) -> None:
        """Queue every key of the route that may need work (both accounts must be ready)."""
        route = self.routes.get(route_id)
        if route is None:
            return
        master, follower = self._sessions[route.master], self._sessions[route.follower]
        if not (master.ready.is_set() and follower.ready.is_set()):
            return  # planned in full when both accounts report their resync
        origins = self.origins_for(route, master.state)
        live = self._links.live(route.id)
        keys = keys_for(route.target, master.state, follower.state, live, origins)
        if self.on_resync is not None:
            self.on_resync(route, keys, origins)
        now = time.monotonic()
        # a liquidating route (equity stop, ctl flatten) only closes and cancels
        urgent = route.target.liquidate
        for key in keys:
            self._queue.push(route.work(key), at=now, urgent=urgent)

    def origins_for(self, route: CopyRoute, master: AccountState) -> dict[str, str]:
        return self._links.route_origins(route.id, route.master_id, master)

    def on_change(self, change: AccountChange) -> None:
        """Called by account sessions for every state change (synchronously)."""
        as_master = self.routes.of_master(change.account_id)
        if as_master and change.origins:
            self._links.add_origins(change.account_id, change.origins)
            self._persist_soon(change.account_id, dict(change.origins))
        if as_master and self.accepting:
            if change.resync:
                for route in as_master:
                    self.resync(route.id)
                self._prune_origins(change.account_id, as_master)
            else:
                self._fan_out(as_master, change)
        for route in self.routes.of_follower(change.account_id):
            if change.resync:
                self.resync(route.id)
                continue
            follower = self._sessions[route.follower].state
            for key in labelled_keys(change.keys, follower, route.master_id):
                self._queue.push(route.work(key), at=change.received_at)

    def _fan_out(self, routes: Sequence[CopyRoute], change: AccountChange) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or len(routes) <= self._eager:
            self._push_master(routes, change)
            return
        self._push_master(routes[: self._eager], change)
        rest = routes[self._eager :]

        def push_rest() -> None:
            if self.accepting:
                self._push_master(rest, change)

        loop.call_soon(push_rest)

    def _push_master(self, routes: Sequence[CopyRoute], change: AccountChange) -> None:
        for route in routes:
            for key in change.keys:
                # a close/cancel overtakes queued opens
                urgent = key in change.reducing
                self._queue.push(route.work(key), at=change.received_at, urgent=urgent)

    def _persist_soon(self, master_id: int, found: dict[str, str]) -> None:
        """After the workers this change woke: the links the planner writes before any
        order already carry what a restart needs of an origin."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._links.persist_origins(master_id, found)
            return

        def persist() -> None:
            try:
                self._links.persist_origins(master_id, found)
            except Exception as exc:
                log.error("origins not stored", account_id=master_id, error=str(exc))

        loop.call_soon(persist)

    def _prune_origins(self, master_id: int, routes: Iterable[CopyRoute]) -> None:
        routes = list(routes)
        master = self._sessions.get(routes[0].master) if routes else None
        if master is None or not master.ready.is_set():
            return
        try:
            self._links.prune_origins(master_id, master.state, [r.id for r in routes])
        except Exception as exc:
            log.error("origins not pruned", account_id=master_id, error=str(exc))


def labelled_keys(keys: frozenset[str], follower: AccountState, master_id: int) -> set[str]:
    """The master item keys that the follower's changed items are copies of."""
    found: set[str] = set()
    for key in keys:
        kind, item_id = split_key(key)
        item = (
            follower.positions.get(item_id)
            if kind is ItemKind.POSITION
            else follower.orders.get(item_id)
        )
        parsed = parse_label(item.label) if item is not None else None
        if parsed is not None and parsed[0] == master_id:
            found.add(parsed[1])
    return found

"""Connections per environment, shared by the accounts of that environment.

An account keeps the connection it was given for as long as it is configured, so that a
reload that adds or removes other accounts never moves it; a new account goes to the
connection of its environment that serves the fewest accounts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cmamd.config.models import ApiConfig
from cmamd.connection.client import OpenApiConnection
from cmamd.logs import get_logger

log = get_logger("cmamd.daemon.pool")

ConnectionFactory = Callable[..., OpenApiConnection]


class ConnectionPool:
    def __init__(self, api: ApiConfig, factory: ConnectionFactory = OpenApiConnection) -> None:
        self.api = api
        self._factory = factory
        self._connections: dict[tuple[bool, int], OpenApiConnection] = {}
        self._started: dict[tuple[bool, int], asyncio.Future[None]] = {}
        self._members: dict[tuple[bool, int], set[str]] = {}
        self._assigned: dict[str, tuple[bool, int]] = {}

    def slot_for(self, account: str, live: bool) -> tuple[bool, int]:
        slot = self._assigned.get(account)
        if slot is None:
            slots = [(live, i) for i in range(self.api.connections_for(live))]
            slot = min(slots, key=lambda s: (len(self._members.get(s, ())), s[1]))
            self._assigned[account] = slot
            self._members.setdefault(slot, set()).add(account)
        return slot

    async def connection_for(self, account: str, live: bool) -> OpenApiConnection:
        """The account's connection, connected and app-authenticated."""
        slot = self.slot_for(account, live)
        conn = self._connections.get(slot)
        if conn is None:
            api = self.api
            conn = self._factory(
                api.url_for(live),
                api.client_id,
                api.resolved_client_secret.get_secret_value(),
                name=f"{'live' if live else 'demo'}-{slot[1]}",
                max_rps=api.max_rps,
                ssl_context=api.ssl_context(),
                request_timeout_s=api.request_timeout_s,
                heartbeat_interval_s=api.heartbeat_interval_s,
                silence_timeout_s=api.silence_timeout_s,
            )
            self._connections[slot] = conn
            # Accounts starting together share the first connect instead of racing it.
            self._started[slot] = asyncio.ensure_future(conn.start(connect_attempts=3))
        try:
            await asyncio.shield(self._started[slot])
        except Exception:
            if self._connections.get(slot) is conn:  # let a later attempt start afresh
                del self._connections[slot]
                del self._started[slot]
            raise
        return conn

    async def release(self, account: str) -> None:
        """Forget the account; a connection left without accounts is closed."""
        slot = self._assigned.pop(account, None)
        if slot is None:
            return
        members = self._members.get(slot, set())
        members.discard(account)
        if not members and slot in self._connections:
            conn = self._connections.pop(slot)
            self._started.pop(slot, None)
            log.info("closing unused connection", connection=conn.name)
            await conn.close()

    async def close(self) -> None:
        for conn in list(self._connections.values()):
            await conn.close()
        self._connections.clear()
        self._started.clear()

    @property
    def connections(self) -> list[OpenApiConnection]:
        return list(self._connections.values())

"""Connections per environment, shared by the accounts of that environment.

An account keeps the connection it was given for as long as it is configured, so that a
reload that adds or removes other accounts never moves it; a new account goes to the
connection of its environment that serves the fewest accounts.

A connection is handed out at once and keeps connecting in the background, with backoff,
for as long as it takes: an account on it retries its own start-up meanwhile. Only refused
application credentials end a connection for good (retrying them would hammer the auth
endpoint); the daemon reads that from ``credentials_refused`` and a later request for the
slot (a SIGHUP retry) starts a fresh connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cmamd.config.models import ApiConfig
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.state import CLOSED
from cmamd.logs import get_logger
from cmamd.protocol.errors import APPLICATION_AUTH_CODES, OpenApiError

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
        """The account's connection, started (it may still be connecting)."""
        slot = self.slot_for(account, live)
        conn = self._connections.get(slot)
        started = self._started.get(slot)
        if conn is None or (started is not None and started.done() and conn.state == CLOSED):
            api = self.api
            conn = self._factory(
                api.url_for(live),
                api.client_id,
                api.resolved_client_secret.get_secret_value(),
                name=f"{'live' if live else 'demo'}-{slot[1]}",
                max_rps=api.max_rps,
                rate_margin_s=api.rate_margin_s,
                ssl_context=api.ssl_context(),
                request_timeout_s=api.request_timeout_s,
                heartbeat_interval_s=api.heartbeat_interval_s,
                silence_timeout_s=api.silence_timeout_s,
            )
            self._connections[slot] = conn
            start = asyncio.ensure_future(conn.start())
            start.add_done_callback(_consume_outcome)
            self._started[slot] = start
        return conn

    def credentials_refused(self) -> OpenApiError | None:
        """The server's refusal of the application credentials, if a connection got one."""
        for start in self._started.values():
            if start.done() and not start.cancelled():
                error = start.exception()
                if isinstance(error, OpenApiError) and error.code in APPLICATION_AUTH_CODES:
                    return error
        return None

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


def _consume_outcome(start: asyncio.Future[None]) -> None:
    # The outcome is read by credentials_refused() and by the accounts' own requests.
    if not start.cancelled():
        start.exception()

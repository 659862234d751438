"""Symbol detail reloads of one account, coalesced.

The server sends a ``ProtoOASymbolChangedEvent`` per change; a burst of them (a broker
updating its whole catalogue, or a hostile server) must cost one reload of the symbols
named meanwhile at a time, not one request per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from cmamd.accounts.supervision import Spawn

Reload = Callable[[list[int]], Awaitable[None]]


class SymbolReloads:
    def __init__(self, reload: Reload, spawn: Spawn) -> None:
        self._reload = reload
        self._spawn = spawn
        self._pending: set[int] = set()
        self._running: asyncio.Task[Any] | None = None
        self.reloads = 0
        """Reloads actually run (for tests and stats)."""

    def request(self, symbol_ids: Iterable[int]) -> None:
        self._pending.update(symbol_ids)
        if self._pending and (self._running is None or self._running.done()):
            self._running = self._spawn(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            batch = sorted(self._pending)
            self._pending.clear()
            self.reloads += 1
            await self._reload(batch)

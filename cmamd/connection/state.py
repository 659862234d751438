"""Where a connection stands: its state, its current link, why it closed, traffic counters.

Requests waiting for a usable link and callers of ``wait_ready`` sleep on ``wait_change()``;
every change wakes them all and each re-checks what it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cmamd.connection.dispatch import callable_name
from cmamd.connection.open_socket import OpenSocket

NEW, CONNECTED, READY, DISCONNECTED, CLOSED = "new", "connected", "ready", "disconnected", "closed"
"""connected: socket open and application authenticated, session hooks running;
ready: hooks done, every request may go; disconnected: reconnecting; closed: for good."""

StateListener = Callable[[str], None]


class ConnectionState:
    def __init__(self, log: Any) -> None:
        self.current = NEW
        self.link: OpenSocket | None = None
        self.closed_error: BaseException | None = None
        self.counts = dict.fromkeys(
            ("sent", "received", "reconnects", "heartbeats_sent", "rate_limited", "bad_frames"), 0
        )
        self._log = log
        self._changed = asyncio.Event()  # replaced on every change: a one-shot broadcast
        self._listeners: list[StateListener] = []

    @property
    def is_ready(self) -> bool:
        return self.current == READY

    def add_listener(self, callback: StateListener) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: StateListener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def set(self, state: str) -> None:
        if state != self.current:
            self.current = state
            self._log.info("connection state", state=state)
            for callback in list(self._listeners):
                try:
                    callback(state)
                except Exception:
                    self._log.exception("state listener failed", listener=callable_name(callback))
        self.notify()

    def set_link(self, link: OpenSocket | None) -> None:
        self.link = link
        self.notify()

    def close_with(self, error: BaseException) -> None:
        """Closed for good because of ``error`` (the first reason given wins)."""
        if self.closed_error is None:
            self.closed_error = error
        self.notify()

    def raise_if_closed(self) -> None:
        if self.closed_error is not None:
            # One instance is raised to many waiters: drop the previous traceback each time.
            raise self.closed_error.with_traceback(None)

    async def wait_change(self) -> None:
        await self._changed.wait()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

"""Routing of received messages: to the request awaiting its clientMsgId, to listeners, or both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cmamd.connection.routing import AccountRouter
from cmamd.protocol.codec import HEARTBEAT_PAYLOAD_TYPE, Envelope
from cmamd.protocol.proto import messages_pb2

Listener = Callable[[Envelope], None]

# Account state tracking must see every execution event, including the one that happens to
# answer a request, so these go to listeners even when they resolve a request.
_REPLIES_ALSO_PUSHED = (messages_pb2.ProtoOAExecutionEvent, messages_pb2.ProtoOAOrderErrorEvent)


def callable_name(callback: Any) -> str:
    return str(getattr(callback, "__qualname__", None) or repr(callback))


class Dispatcher:
    def __init__(self, log: Any) -> None:
        self._log = log
        self._pending: dict[str, asyncio.Future[Envelope]] = {}
        self._listeners: list[Listener] = []
        self.accounts = AccountRouter(log)
        """Listeners of one account each: reached by the message's account id."""

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def add_listener(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def expect(self, client_msg_id: str, future: asyncio.Future[Envelope]) -> None:
        """Resolve ``future`` with the first message carrying ``client_msg_id``."""
        self._pending[client_msg_id] = future

    def forget(self, client_msg_id: str) -> None:
        """Stop waiting; a reply arriving later goes to listeners as unsolicited."""
        self._pending.pop(client_msg_id, None)

    def fail_all(self, make_error: Callable[[], BaseException]) -> int:
        """Fail every awaited reply (the link carrying the requests is gone); returns how many."""
        waiting = [future for future in self._pending.values() if not future.done()]
        self._pending.clear()
        for future in waiting:
            future.set_exception(make_error())
        return len(waiting)

    def dispatch(self, envelope: Envelope) -> None:
        if envelope.payload_type == HEARTBEAT_PAYLOAD_TYPE:
            return  # liveness is tracked by the reader; nothing for anyone else
        future = None
        if envelope.client_msg_id is not None:
            future = self._pending.pop(envelope.client_msg_id, None)
        if future is None or isinstance(envelope.message, _REPLIES_ALSO_PUSHED):
            self._notify_listeners(envelope)
        if future is not None and not future.done():
            future.set_result(envelope)

    def _notify_listeners(self, envelope: Envelope) -> None:
        self.accounts.route(envelope)
        for listener in list(self._listeners):
            try:
                listener(envelope)
            except Exception:
                # One consumer's bug must not stop the reader or starve the other consumers.
                self._log.exception(
                    "listener failed", listener=callable_name(listener), message=envelope.name
                )

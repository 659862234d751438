"""One client connection: its protocol state and an outbox drained by a writer task.

Everything that sends (request handling, market events, fault injection) only queues frames,
so it can run from synchronous code; the writer task keeps the order and closes the
connection after the frames queued before the close.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from cmamd.protocol import codec


@dataclass(slots=True)
class ConnectionInfo:
    """What tests may inspect about a connection; ``authorised_accounts`` is live.

    After the connection closed, ``authorised_accounts`` keeps the accounts it had then.
    """

    conn_id: int
    opened_at: float
    remote: str
    closed_at: float | None = None
    authorised_accounts: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One frame a client sent, as decoded (unknown payload types keep the envelope)."""

    conn_id: int
    at: float
    payload_type: int
    name: str
    client_msg_id: str | None
    message: Message


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """A frame at the simulator's socket: ``"in"`` as received, ``"out"`` once written."""

    direction: str
    conn_id: int
    at: float  # time.monotonic() (or the server's monotonic clock)
    frame: bytes


FrameListener = Callable[[FrameEvent], None]


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Session:
    def __init__(
        self,
        info: ConnectionInfo,
        connection: ServerConnection,
        now: float,
        on_written: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self.info = info
        self._on_written = on_written
        self.app_authenticated = False
        self.last_received = now
        self.admitted: deque[float] = deque()
        """When the requests of the last second were admitted (rate limit window)."""
        self.admitted_historical: deque[float] = deque()
        self.spots: dict[int, dict[int, bool]] = {}
        """Spot subscriptions: account -> {symbol id: with timestamp}."""
        self.closing = False
        self._connection = connection
        self._outbox: asyncio.Queue[bytes | _Close] = asyncio.Queue()

    @property
    def conn_id(self) -> int:
        return self.info.conn_id

    def is_authorised(self, account_id: int) -> bool:
        return account_id in self.info.authorised_accounts

    def authorise(self, account_id: int) -> None:
        self.info.authorised_accounts.add(account_id)

    def deauthorise(self, account_id: int) -> None:
        """Drop the account's session state: authorisation and spot subscriptions."""
        self.info.authorised_accounts.discard(account_id)
        self.spots.pop(account_id, None)

    def send(self, message: Message, client_msg_id: str | None = None) -> None:
        self.send_frames([codec.encode(message, client_msg_id)])

    def send_frames(self, frames: list[bytes]) -> None:
        if self.closing:
            return
        for frame in frames:
            self._outbox.put_nowait(frame)

    def close_after_flush(self, code: int = 1000, reason: str = "") -> None:
        if self.closing:
            return
        self._outbox.put_nowait(_Close(code, reason))
        self.closing = True

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake, like a network failure."""
        self.closing = True
        transport = self._connection.transport
        if transport is not None:
            transport.abort()

    async def run_writer(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, _Close):
                    await self._connection.close(item.code, item.reason)
                    return
                await self._connection.send(item)
                if self._on_written is not None:
                    self._on_written(self.info.conn_id, item)
        except ConnectionClosed:
            return

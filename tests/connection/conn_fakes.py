"""Test doubles for the connection layer: a virtual clock and a tiny scriptable Open API server.

The fake server only knows the handshake and what each test scripts; the full broker
behaviour is tested against cmamd.sim in test_against_sim.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from polling import wait_until
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from cmamd.connection.backoff import Backoff
from cmamd.connection.client import OpenApiConnection
from cmamd.protocol.codec import Envelope, decode, encode
from cmamd.protocol.proto import common_pb2, messages_pb2

CLIENT_ID = "fake-client"
CLIENT_SECRET = "fake-secret-do-not-log"


def quick_connection(
    url: str, *, name: str, client_secret: str = CLIENT_SECRET, **options: Any
) -> OpenApiConnection:
    """A connection whose requests time out and whose reconnects come quickly, so that a test
    of a fault waits fractions of a second, not the production delays."""
    quick: dict[str, Any] = {"request_timeout_s": 2.0, "backoff": Backoff(0.01, 0.05)}
    return OpenApiConnection(url, CLIENT_ID, client_secret, name=name, **{**quick, **options})


class VirtualClock:
    """A Clock whose time only moves when every task is waiting on it.

    ``drive()`` runs in the background: once the event loop has settled it jumps to the
    earliest pending sleep, so a minute of throttling takes milliseconds.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(seconds, 0.0), next(self._seq), future))
        await future

    async def drive(self) -> None:
        while True:
            for _ in range(20):  # let every runnable task reach its next wait
                await asyncio.sleep(0)
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if not self._timers:
                continue
            deadline, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, deadline)
            future.set_result(None)


@dataclass(frozen=True)
class Received:
    conn: int
    at: float
    envelope: Envelope

    @property
    def name(self) -> str:
        return self.envelope.name


Reply = Message | bytes | str
Responder = Callable[[Envelope], list[Reply] | None]


def default_replies(envelope: Envelope) -> list[Reply] | None:
    message = envelope.message
    if isinstance(message, messages_pb2.ProtoOAVersionReq):
        return [messages_pb2.ProtoOAVersionRes(version="fake-1")]
    if isinstance(message, messages_pb2.ProtoOAAccountAuthReq):
        return [messages_pb2.ProtoOAAccountAuthRes(ctidTraderAccountId=message.ctidTraderAccountId)]
    if isinstance(message, messages_pb2.ProtoOATraderReq):
        return [oa_error("ACCOUNT_NOT_AUTHORIZED", account_id=message.ctidTraderAccountId)]
    return None  # unknown: no answer at all


def oa_error(
    code: str, *, account_id: int | None = None, retry_after: int | None = None
) -> Message:
    error = messages_pb2.ProtoOAErrorRes(errorCode=code, description=f"fake {code}")
    if account_id is not None:
        error.ctidTraderAccountId = account_id
    if retry_after is not None:
        error.retryAfter = retry_after
    return error


class FakeOpenApi:
    """Answers application auth; everything else goes through ``responder``.

    Replies carry the request's clientMsgId; ``bytes``/``str`` replies are sent raw.
    """

    def __init__(self) -> None:
        self.client_secret = CLIENT_SECRET
        self.responder: Responder = default_replies
        self.received: list[Received] = []
        self.connections: list[ServerConnection] = []
        self.answer_app_auth = True
        self._server: Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def names(self, conn: int | None = None) -> list[str]:
        return [r.name for r in self.received if conn is None or r.conn == conn]

    def of(self, cls: type[Message]) -> list[Received]:
        return [r for r in self.received if isinstance(r.envelope.message, cls)]

    async def push(self, message: Reply, conn: int = -1, client_msg_id: str | None = None) -> None:
        ws = self.connections[conn]
        await ws.send(
            message if isinstance(message, bytes | str) else encode(message, client_msg_id)
        )

    async def drop_all(self) -> None:
        for ws in self.connections:
            ws.transport.abort()  # abrupt, like a dead peer: no closing handshake

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        with contextlib.suppress(ConnectionClosed):
            await self._serve(len(self.connections) - 1, ws)

    async def _serve(self, conn: int, ws: ServerConnection) -> None:
        async for frame in ws:
            assert isinstance(frame, bytes)
            envelope = decode(frame)
            self.received.append(Received(conn, time.monotonic(), envelope))
            message = envelope.message
            if isinstance(message, common_pb2.ProtoHeartbeatEvent):
                continue
            if isinstance(message, messages_pb2.ProtoOAApplicationAuthReq):
                if not self.answer_app_auth:
                    continue
                if message.clientId != CLIENT_ID or message.clientSecret != self.client_secret:
                    await ws.send(
                        encode(oa_error("CH_CLIENT_AUTH_FAILURE"), envelope.client_msg_id)
                    )
                    await ws.close()
                    return
                await ws.send(
                    encode(messages_pb2.ProtoOAApplicationAuthRes(), envelope.client_msg_id)
                )
                continue
            for reply in self.responder(envelope) or []:
                if isinstance(reply, bytes | str):
                    await ws.send(reply)
                else:
                    await ws.send(encode(reply, envelope.client_msg_id))


async def eventually(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    """Wait until ``predicate()`` is truthy (polling the loop), or fail the test."""
    await wait_until(predicate, timeout)

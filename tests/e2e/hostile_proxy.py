"""A corrupting WebSocket proxy between the daemon and the simulator.

Each daemon connection gets its own upstream connection to the simulator; frames are
passed through both ways, and the campaign arms faults on the server -> daemon side:
raw frames injected now (garbage, forged events, floods), a close frame right after the
next fill of an account, a wrong reply type to the next request of a kind, replays of
frames seen earlier. The proxy never changes what the daemon sends to the simulator, so
the simulator's record is the truth about which orders reached a follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from cmamd.protocol import codec
from cmamd.protocol.proto import common_pb2, messages_pb2, model_pb2

Frame = bytes | str


@dataclass
class _Pair:
    downstream: ServerConnection  # the daemon
    upstream: ClientConnection  # the simulator


@dataclass
class HostileProxy:
    upstream_url: str
    rng: random.Random
    server: Server | None = None
    pairs: list[_Pair] = field(default_factory=list)
    connections: int = 0
    # frames from the server, kept for replays: (payload type, raw frame)
    seen: list[tuple[int, bytes]] = field(default_factory=list)
    _close_after_fill_of: int | None = None
    _wrong_reply_to: dict[int, Message] = field(default_factory=dict)
    faults_fired: int = 0

    async def start(self) -> None:
        self.server = await serve(self._serve, "127.0.0.1", 0, max_size=None, compression=None)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    # faults --------------------------------------------------------------------------------
    async def inject(self, frames: Sequence[Frame], *, pace_every: int = 200) -> int:
        """Send ``frames`` to every daemon connection now; returns how many were sent."""
        sent = 0
        for pair in list(self.pairs):
            for index, frame in enumerate(frames):
                try:
                    await pair.downstream.send(frame)
                except ConnectionClosed:
                    break
                sent += 1
                if index % pace_every == pace_every - 1:
                    await asyncio.sleep(0)  # a flood, not a lock-up of the test's loop
        return sent

    def close_after_next_fill(self, account_id: int) -> None:
        """Forward the next ORDER_FILLED event of ``account_id``, then send a close frame."""
        self._close_after_fill_of = account_id

    def wrong_reply_to_next(self, request: type[Message], reply: Message) -> None:
        """Answer the next ``request`` (still forwarded) with ``reply`` under its clientMsgId;
        the server's real reply to it is dropped."""
        self._wrong_reply_to[codec.payload_type_of(request)] = reply

    def recorded(self, payload_type: int) -> list[bytes]:
        return [raw for kind, raw in self.seen if kind == payload_type]

    async def drop_all(self) -> None:
        for pair in list(self.pairs):
            await pair.downstream.close()

    # plumbing ------------------------------------------------------------------------------
    async def _serve(self, downstream: ServerConnection) -> None:
        try:
            upstream = await connect(self.upstream_url, max_size=None, compression=None)
        except OSError:
            await downstream.close()
            return
        pair = _Pair(downstream, upstream)
        self.pairs.append(pair)
        self.connections += 1
        swallow: set[str] = set()  # clientMsgIds whose real reply is replaced
        tasks = [
            asyncio.create_task(self._to_server(pair, swallow)),
            asyncio.create_task(self._to_daemon(pair, swallow)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)
            self.pairs.remove(pair)
            await upstream.close()
            await downstream.close()

    async def _to_server(self, pair: _Pair, swallow: set[str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in pair.downstream:
                wrong = None
                if isinstance(frame, bytes):
                    envelope = common_pb2.ProtoMessage()
                    envelope.ParseFromString(frame)
                    if envelope.HasField("clientMsgId"):
                        wrong = self._wrong_reply_to.pop(envelope.payloadType, None)
                    if wrong is not None:
                        swallow.add(envelope.clientMsgId)  # before the real reply can come
                await pair.upstream.send(frame)
                if wrong is not None:
                    self.faults_fired += 1
                    await pair.downstream.send(codec.encode(wrong, envelope.clientMsgId))

    async def _to_daemon(self, pair: _Pair, swallow: set[str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in pair.upstream:
                assert isinstance(frame, bytes)
                envelope = common_pb2.ProtoMessage()
                envelope.ParseFromString(frame)
                if envelope.HasField("clientMsgId") and envelope.clientMsgId in swallow:
                    swallow.discard(envelope.clientMsgId)
                    continue
                if envelope.payloadType != common_pb2.HEARTBEAT_EVENT:
                    self.seen.append((envelope.payloadType, frame))
                    del self.seen[:-500]
                await pair.downstream.send(frame)
                if self._is_watched_fill(envelope):
                    self._close_after_fill_of = None
                    self.faults_fired += 1
                    await pair.downstream.close()
                    return

    def _is_watched_fill(self, envelope: common_pb2.ProtoMessage) -> bool:
        if self._close_after_fill_of is None:
            return False
        if envelope.payloadType != codec.payload_type_of(messages_pb2.ProtoOAExecutionEvent):
            return False
        event = messages_pb2.ProtoOAExecutionEvent()
        event.ParseFromString(envelope.payload)
        return (
            event.ctidTraderAccountId == self._close_after_fill_of
            and event.executionType == model_pb2.ORDER_FILLED
        )

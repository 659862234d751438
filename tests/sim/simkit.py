"""A tiny raw Open API client and helpers shared by the simulator tests."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cmamd.protocol import codec
from cmamd.protocol.codec import Envelope
from cmamd.protocol.proto import messages_pb2
from cmamd.sim import SimConfig, SimServer

DEFAULT_TIMEOUT = 2.0


class RawClient:
    """Speaks the wire protocol and nothing more: no correlation, retries or heartbeats."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._counter = 0

    @classmethod
    async def open(cls, url: str, ssl_context: ssl.SSLContext | None = None) -> RawClient:
        connection = await connect(
            url, ssl=ssl_context, proxy=None, ping_interval=None, compression=None, max_size=None
        )
        return cls(connection)

    def next_id(self) -> str:
        self._counter += 1
        return f"cm-{self._counter}"

    async def send(self, message: Message, client_msg_id: str | None = None) -> None:
        await self.connection.send(codec.encode(message, client_msg_id))

    async def recv(self, timeout: float = DEFAULT_TIMEOUT, *, heartbeats: bool = False) -> Envelope:
        """The next message (heartbeats skipped unless asked for)."""
        while True:
            frame = await asyncio.wait_for(self.connection.recv(), timeout)
            assert isinstance(frame, bytes), "the server sent a text frame"
            envelope = codec.decode(frame)
            if heartbeats or envelope.payload_type != codec.HEARTBEAT_PAYLOAD_TYPE:
                return envelope

    async def request(self, message: Message, client_msg_id: str | None = None) -> Envelope:
        """Send with a fresh clientMsgId (or the given one) and return the next message."""
        await self.send(message, client_msg_id or self.next_id())
        return await self.recv()

    async def drain(self, quiet: float = 0.15) -> list[Envelope]:
        """Every message until none arrives for ``quiet`` seconds (heartbeats skipped)."""
        received = []
        while True:
            try:
                received.append(await self.recv(timeout=quiet))
            except TimeoutError:
                return received

    async def app_auth(self, config: SimConfig) -> None:
        reply = await self.request(
            messages_pb2.ProtoOAApplicationAuthReq(
                clientId=config.client_id, clientSecret=config.client_secret
            )
        )
        assert isinstance(reply.message, messages_pb2.ProtoOAApplicationAuthRes), reply

    async def account_auth(self, account_id: int, access_token: str) -> Envelope:
        return await self.request(
            messages_pb2.ProtoOAAccountAuthReq(
                ctidTraderAccountId=account_id, accessToken=access_token
            )
        )

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Wait for the server to close; returns the close code (None: no close frame)."""

        async def read_until_closed() -> None:
            try:
                while True:
                    await self.connection.recv()
            except ConnectionClosed:
                return

        await asyncio.wait_for(read_until_closed(), timeout)
        received = self.connection.protocol.close_rcvd
        return received.code if received is not None else None

    async def close(self) -> None:
        await self.connection.close()


Connect = Callable[..., Awaitable[RawClient]]


def account_id(config: SimConfig, name: str) -> int:
    return config.account(name).account_id


def access_token(server: SimServer, name: str) -> str:
    token = server.tokens.ctid_of(account_id(server.config, name)).access_token
    assert token is not None
    return token


async def authorised_client(open_client: Connect, server: SimServer, *names: str) -> RawClient:
    """A client with the app authenticated and the named accounts authorised."""
    client = await open_client(server.url)
    await client.app_auth(server.config)
    for name in names:
        reply = await client.account_auth(
            account_id(server.config, name), access_token(server, name)
        )
        assert isinstance(reply.message, messages_pb2.ProtoOAAccountAuthRes), reply
    return client

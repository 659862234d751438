"""One open socket of a connection: its liveness bookkeeping and the application handshake."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from cmamd.connection.ratelimit import Slot
from cmamd.protocol.codec import Envelope, ProtocolError, decode, encode
from cmamd.protocol.errors import error_from_message
from cmamd.protocol.proto import common_pb2, messages_pb2

HEARTBEAT_FRAME = encode(common_pb2.ProtoHeartbeatEvent())


@dataclass(eq=False)
class OpenSocket:
    """A socket that completed application auth; replaced wholesale on reconnect."""

    ws: ClientConnection
    generation: int
    opened_at: float
    last_sent: float
    last_received: float
    alive: bool = True

    def is_open(self) -> bool:
        # Checked right before ws.send with no await in between: when this holds, send()
        # writes the frame; when it does not, send() would raise without writing anything.
        return self.alive and self.ws.state is State.OPEN


def decode_frame(frame: str | bytes, log: Any) -> Envelope | None:
    """The envelope in ``frame``, or None (logged) for text or undecodable frames."""
    if isinstance(frame, str):
        log.warning("text frame ignored", chars=len(frame))
        return None
    try:
        return decode(frame)
    except ProtocolError as exc:
        # Only the size: server frames can carry tokens (account list echoes the token).
        log.warning("undecodable frame ignored", error=str(exc), bytes=len(frame))
        return None


async def authenticate_app(
    ws: ClientConnection,
    client_id: str,
    client_secret: str,
    client_msg_id: str,
    slot: Slot,
    timeout_s: float,
    log: Any,
) -> int:
    """Send ``ProtoOAApplicationAuthReq`` as the first frame and wait for its answer.

    Raises the typed OpenApiError of an error reply (CH_CLIENT_AUTH_FAILURE for bad
    credentials), TimeoutError, or websockets' ConnectionClosed. Returns how many frames
    were received, for the connection's counters.
    """
    request = messages_pb2.ProtoOAApplicationAuthReq(clientId=client_id, clientSecret=client_secret)
    try:
        await ws.send(encode(request, client_msg_id))
    finally:
        slot.used()
    received = 0
    async with asyncio.timeout(timeout_s):
        while True:
            frame = await ws.recv()
            received += 1
            envelope = decode_frame(frame, log)
            if envelope is None:
                continue
            error = error_from_message(envelope.message)
            answers = envelope.client_msg_id == client_msg_id
            # A server may answer a refused handshake without echoing the id.
            if not answers and not (error is not None and envelope.client_msg_id is None):
                continue  # heartbeats or early pushes: not the answer
            if error is not None:
                raise error
            if not isinstance(envelope.message, messages_pb2.ProtoOAApplicationAuthRes):
                raise ProtocolError(f"unexpected answer to application auth: {envelope.name}")
            return received

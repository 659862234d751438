"""Which URLs a connection may use, and how the socket is opened.

Application credentials and account tokens travel in the first frames, so plain ``ws://``
is only accepted on loopback, where the simulator runs.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from cmamd.protocol.codec import MAX_FRAME_BYTES

CLOSE_TIMEOUT_S = 2.0
"""How long a closing handshake may take before the socket is simply dropped."""

_CONNECT_HAS_PROXY = "proxy" in inspect.signature(connect).parameters  # websockets >= 15


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    host: str
    secure: bool
    loopback: bool


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_endpoint(url: str) -> Endpoint:
    """Validate ``url``; raises ValueError for anything but wss:// or loopback ws://."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r}: the Open API endpoint must be a wss:// URL")
    host = parts.hostname
    if not host:
        raise ValueError(f"{url!r}: no host")
    loopback = is_loopback(host)
    if parts.scheme == "ws" and not loopback:
        raise ValueError(
            f"{url!r}: plain ws:// would send credentials and orders unencrypted; use wss:// "
            "(ws:// is accepted only on loopback, for the simulator)"
        )
    return Endpoint(url=url, host=host, secure=parts.scheme == "wss", loopback=loopback)


def default_ssl_context(endpoint: Endpoint, given: ssl.SSLContext | None) -> ssl.SSLContext | None:
    if not endpoint.secure:
        if given is not None:
            raise ValueError(f"{endpoint.url!r}: an SSL context needs a wss:// URL")
        return None
    return given if given is not None else ssl.create_default_context()


class WatchedConnection(ClientConnection):
    """A client socket that tells at once when its closing handshake has begun.

    A close frame from the server leaves the socket "closing" while our reader still waits
    for the end of the TCP stream, which a broken or hostile server may never send: the link
    must be given up on the close frame, not on the stream's end.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closing_started = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.protocol.state in (State.CLOSING, State.CLOSED):  # not CONNECTING
            self.closing_started.set()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.closing_started.set()


async def open_socket(
    endpoint: Endpoint, ssl_context: ssl.SSLContext | None, open_timeout_s: float
) -> ClientConnection:
    options: dict[str, Any] = {}
    if _CONNECT_HAS_PROXY and endpoint.loopback:
        options["proxy"] = None  # an HTTP(S)_PROXY in the environment must not catch the sim
    return await connect(
        endpoint.url,
        ssl=ssl_context,
        max_size=MAX_FRAME_BYTES,
        ping_interval=None,  # the Open API keeps the link alive with its own heartbeat
        open_timeout=open_timeout_s,
        close_timeout=CLOSE_TIMEOUT_S,
        compression=None,  # protobuf frames are small and dense; spare the CPU
        create_connection=WatchedConnection,
        **options,
    )

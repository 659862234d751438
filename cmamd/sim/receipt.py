"""When each message's bytes were read from the socket: the moment the server "receives" it.

The rate window (``pipeline.FramePipeline``) and the frame hook are timed at receipt. Timed
when the connection's handler gets round to a message instead, a burst of requests would
be stamped after the simulator's own handling of the requests ahead of it (a Python
simulator spends most of a millisecond on an order), and frames a client wrote a second
apart could land in one window for no reason but the simulator's slowness: the client would
be made to pay for the judge's speed, not for what a network does to its frames. Timing at
receipt keeps the window exact (``max_rps`` in any rolling second of receipts) and as
strict as a server that counts requests as they come in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame


class ReceiptStampedConnection(ServerConnection):
    """A server connection that notes, per message, when its last frame was read."""

    monotonic: Callable[[], float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received_at: deque[float] = deque()
        self._read_at = 0.0

    def data_received(self, data: bytes) -> None:
        self._read_at = self.monotonic()
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        # a message is complete with its final data frame (continuations included)
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES and event.fin:
            self.received_at.append(self._read_at)
        super().process_event(event)

    def take_received_at(self) -> float:
        """The receipt time of the message the handler just got (oldest first)."""
        return self.received_at.popleft() if self.received_at else self.monotonic()


def stamped_connection_class(monotonic: Callable[[], float]) -> type[ReceiptStampedConnection]:
    """The connection class for ``serve(create_connection=...)``, timed by ``monotonic``."""
    return type(
        "ReceiptStampedConnection",
        (ReceiptStampedConnection,),
        {"monotonic": staticmethod(monotonic)},
    )

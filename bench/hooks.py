"""Broker-side timestamps: the moment the simulator's fill leaves its socket.

``FillRecorder`` listens to one ``SimServer`` instance through its public frame hook
(``SimServer.add_frame_listener``) and notes every ORDER_FILLED execution event the first
time it is written to any connection, with the time of that write (``time.monotonic()``,
the simulator's clock). Only the envelope of each outgoing frame is parsed on the way;
execution events are decoded in full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cmamd.protocol import codec
from cmamd.protocol.proto import common_pb2, messages_pb2, model_pb2
from cmamd.sim import FrameEvent, SimServer

_EXECUTION_EVENT = codec.payload_type_of(messages_pb2.ProtoOAExecutionEvent())


@dataclass(frozen=True, slots=True)
class Fill:
    at: float  # time.monotonic()
    account_id: int
    order_id: int
    position_id: int
    label: str
    closing: bool  # the fill reduced or closed a position


class FillRecorder:
    def __init__(self, sim: SimServer) -> None:
        self.fills: list[Fill] = []
        self._listeners: list[Callable[[Fill], None]] = []
        self._seen: set[tuple[int, int]] = set()  # (account, order): the first write counts
        sim.add_frame_listener(self._on_frame)

    def add_listener(self, listener: Callable[[Fill], None]) -> None:
        self._listeners.append(listener)

    def _on_frame(self, event: FrameEvent) -> None:
        if event.direction != "out":
            return
        envelope = common_pb2.ProtoMessage.FromString(event.frame)
        if envelope.payloadType != _EXECUTION_EVENT:
            return
        message = messages_pb2.ProtoOAExecutionEvent.FromString(envelope.payload)
        if message.executionType != model_pb2.ORDER_FILLED:
            return
        key = (message.ctidTraderAccountId, message.order.orderId)
        if key in self._seen:
            return
        self._seen.add(key)
        fill = Fill(
            event.at,
            message.ctidTraderAccountId,
            message.order.orderId,
            message.position.positionId,
            message.position.tradeData.label,
            message.order.closingOrder,
        )
        self.fills.append(fill)
        for listener in self._listeners:
            listener(fill)

"""Broker-side timestamps: the moment the simulator fills an order.

The simulator executes a request synchronously when its frame arrives, so the fill's
execution event leaving its request handler is the moment "the position appears on the
broker". ``FillRecorder`` wraps the handler of one ``SimServer`` instance (nothing global is
patched) and notes every ORDER_FILLED with ``time.monotonic()``.

This reaches into ``SimServer._handlers`` — the simulator has no public hook for it. A small
public one (e.g. ``SimServer.add_execution_listener``) would make this less brittle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.sim import SimServer


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
        handlers: Any = sim._handlers
        original = handlers.handle

        def handle(session: Any, request: Any) -> Any:
            exchange = original(session, request)
            now = time.monotonic()
            seen: set[int] = set()
            for _, message in exchange.out:
                if (
                    isinstance(message, messages_pb2.ProtoOAExecutionEvent)
                    and message.executionType == model_pb2.ORDER_FILLED
                    and message.order.orderId not in seen
                ):
                    seen.add(message.order.orderId)
                    fill = Fill(
                        now,
                        message.ctidTraderAccountId,
                        message.order.orderId,
                        message.position.positionId,
                        message.position.tradeData.label,
                        message.order.closingOrder,
                    )
                    self.fills.append(fill)
                    for listener in self._listeners:
                        listener(fill)
            return exchange

        handlers.handle = handle

    def add_listener(self, listener: Callable[[Fill], None]) -> None:
        self._listeners.append(listener)

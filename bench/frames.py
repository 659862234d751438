"""Frames recorded at the simulator's socket, decoded after the run (never on the hot path).

Kept: orders coming in (new order, close position) and execution events going out, each
as a small dict with the connection, the time at the socket and what identifies the trade.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2 as pb

Raw = tuple[str, int, float, bytes]


def decode(raw: list[Raw]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for direction, conn_id, at, frame in raw:
        try:
            message = codec.decode(frame).message
        except codec.ProtocolError:
            continue
        base = {"dir": direction, "conn": conn_id, "at": at}
        if direction == "in" and isinstance(message, pb.ProtoOANewOrderReq):
            out.append(
                {
                    **base,
                    "kind": "new",
                    "account": message.ctidTraderAccountId,
                    "label": message.label,
                }
            )
        elif direction == "in" and isinstance(message, pb.ProtoOAClosePositionReq):
            out.append(
                {
                    **base,
                    "kind": "close",
                    "account": message.ctidTraderAccountId,
                    "position": message.positionId,
                }
            )
        elif direction == "out" and isinstance(
            message, (pb.ProtoOAErrorRes, pb.ProtoOAOrderErrorEvent)
        ):
            out.append({**base, "kind": "error", "code": message.errorCode})
        elif direction == "out" and isinstance(message, pb.ProtoOAExecutionEvent):
            out.append(
                {
                    **base,
                    "kind": "exec",
                    "type": message.executionType,
                    "account": message.ctidTraderAccountId,
                    "position": message.position.positionId,
                    "status": message.position.positionStatus,
                    "label": message.position.tradeData.label,
                    "closing": message.order.closingOrder,
                }
            )
    return out


def requests_in(raw: list[Raw]) -> dict[str, int]:
    """Frames received per message name, heartbeats excluded."""
    counts: dict[str, int] = {}
    for direction, _, _, frame in raw:
        if direction != "in":
            continue
        try:
            envelope = codec.decode(frame)
        except codec.ProtocolError:
            continue
        if envelope.payload_type != codec.HEARTBEAT_PAYLOAD_TYPE:
            counts[envelope.name] = counts.get(envelope.name, 0) + 1
    return counts


def write(path: Path, raw: list[Raw]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps({"frames": decode(raw), "requests_in": requests_in(raw)}))
    temporary.replace(path)

"""Envelope codec: every frame on the wire is one ``ProtoMessage`` wrapping one payload.

The inner message's own ``payloadType`` field is optional with a default and is not sent
on the wire (Spotware's SDKs leave it unset too); routing uses the envelope's field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from cmamd.protocol.proto import common_pb2, messages_pb2

M = TypeVar("M", bound=Message)

MAX_FRAME_BYTES = 1 << 20
"""Largest frame either side accepts; a real account's reconcile or symbol list is far below."""


def _build_registry() -> tuple[dict[int, type[Message]], dict[type[Message], int]]:
    by_type: dict[int, type[Message]] = {}
    for module in (common_pb2, messages_pb2):
        for name, descriptor in module.DESCRIPTOR.message_types_by_name.items():
            field = descriptor.fields_by_name.get("payloadType")
            if field is None or not field.has_default_value:
                continue  # the envelope itself
            cls = getattr(module, name)
            by_type[field.default_value] = cls
    return by_type, {cls: pt for pt, cls in by_type.items()}


PAYLOAD_CLASSES, PAYLOAD_TYPES = _build_registry()

HEARTBEAT_PAYLOAD_TYPE = common_pb2.HEARTBEAT_EVENT


class ProtocolError(Exception):
    """A frame that cannot be understood: not a ProtoMessage, unknown type, bad payload."""


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: int
    message: Message
    client_msg_id: str | None = None

    @property
    def name(self) -> str:
        return type(self.message).__name__


def payload_type_of(message: Message | type[Message]) -> int:
    cls = message if isinstance(message, type) else type(message)
    try:
        return PAYLOAD_TYPES[cls]
    except KeyError:
        raise ProtocolError(f"{cls.__name__} is not an Open API payload") from None


def encode(message: Message, client_msg_id: str | None = None) -> bytes:
    """Serialise ``message`` inside a ``ProtoMessage``; raises if a required field is unset."""
    envelope = common_pb2.ProtoMessage(payloadType=payload_type_of(message))
    payload = message.SerializeToString()
    if payload:  # an empty payload is left off, as on Spotware's wire (heartbeat = 08 33)
        envelope.payload = payload
    if client_msg_id is not None:
        envelope.clientMsgId = client_msg_id
    return envelope.SerializeToString()


def decode(frame: bytes) -> Envelope:
    """Parse one frame; unknown payload types and malformed payloads raise ProtocolError."""
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    envelope = common_pb2.ProtoMessage()
    try:
        envelope.ParseFromString(frame)
    except DecodeError as exc:
        raise ProtocolError(f"not a ProtoMessage: {exc}") from None
    if not envelope.IsInitialized():
        raise ProtocolError("ProtoMessage without payloadType")
    cls = PAYLOAD_CLASSES.get(envelope.payloadType)
    if cls is None:
        raise ProtocolError(f"unknown payloadType {envelope.payloadType}")
    message = cls()
    try:
        message.ParseFromString(envelope.payload)
    except DecodeError as exc:
        raise ProtocolError(f"malformed {cls.__name__}: {exc}") from None
    if not message.IsInitialized():
        # Present on every runtime Message, but absent from types-protobuf's stubs.
        missing = ", ".join(message.FindInitializationErrors())  # type: ignore[attr-defined]
        raise ProtocolError(f"{cls.__name__} lacks required fields: {missing}")
    client_msg_id = envelope.clientMsgId if envelope.HasField("clientMsgId") else None
    return Envelope(envelope.payloadType, message, client_msg_id)

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cmamd.protocol import codec, errors
from cmamd.protocol.proto import common_pb2, messages_pb2, model_pb2

ROOT = Path(__file__).resolve().parents[1]


def test_generated_modules_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_heartbeat_bytes_match_the_documented_frame() -> None:
    # docs/protocol.md §1: a TCP heartbeat is 00 00 00 02 08 33, i.e. envelope bytes 08 33.
    assert codec.encode(common_pb2.ProtoHeartbeatEvent()) == bytes([0x08, 0x33])


def test_round_trip_keeps_client_msg_id_and_fields() -> None:
    request = messages_pb2.ProtoOANewOrderReq(
        ctidTraderAccountId=7,
        symbolId=1,
        orderType=model_pb2.MARKET,
        tradeSide=model_pb2.SELL,
        volume=100_000,
        label="x",
    )
    envelope = codec.decode(codec.encode(request, "cm-1"))
    assert envelope.payload_type == 2106
    assert envelope.client_msg_id == "cm-1"
    assert envelope.message == request
    # The inner payloadType is left off the wire, as Spotware's clients do.
    assert not envelope.message.HasField("payloadType")


def test_registry_maps_payload_types_both_ways() -> None:
    assert codec.PAYLOAD_CLASSES[2142] is messages_pb2.ProtoOAErrorRes
    assert codec.payload_type_of(messages_pb2.ProtoOAOrderErrorEvent) == 2132
    assert codec.PAYLOAD_CLASSES[51] is common_pb2.ProtoHeartbeatEvent


@pytest.mark.parametrize(
    "frame, reason",
    [
        (b"\xff\xff", "not a ProtoMessage"),
        (common_pb2.ProtoMessage(payloadType=9999).SerializeToString(), "unknown payloadType"),
        (common_pb2.ProtoMessage(payloadType=2100, payload=b"").SerializeToString(), "lacks"),
    ],
)
def test_decode_rejects_bad_frames(frame: bytes, reason: str) -> None:
    with pytest.raises(codec.ProtocolError, match=reason):
        codec.decode(frame)


def test_encode_refuses_missing_required_fields() -> None:
    with pytest.raises(Exception, match="required"):
        codec.encode(messages_pb2.ProtoOAApplicationAuthReq(clientId="only-id"))


def test_error_replies_become_typed_exceptions() -> None:
    order_error = errors.error_from_message(
        messages_pb2.ProtoOAOrderErrorEvent(
            ctidTraderAccountId=5, errorCode="TRADING_BAD_VOLUME", description="bad", orderId=9
        )
    )
    assert isinstance(order_error, errors.OrderError)
    assert (order_error.code, order_error.account_id, order_error.order_id) == (
        "TRADING_BAD_VOLUME",
        5,
        9,
    )
    throttled = errors.error_from_message(
        messages_pb2.ProtoOAErrorRes(errorCode="REQUEST_FREQUENCY_EXCEEDED", retryAfter=2)
    )
    assert isinstance(throttled, errors.RateLimited)
    assert throttled.retry_after_s == 2.0 and throttled.is_rate_limit
    plain = errors.error_from_message(common_pb2.ProtoErrorRes(errorCode="INVALID_REQUEST"))
    assert type(plain) is errors.OpenApiError and plain.code == "INVALID_REQUEST"
    assert errors.error_from_message(messages_pb2.ProtoOAVersionRes(version="1")) is None

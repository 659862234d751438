"""Conformance of the project's .proto definitions with Spotware's published schema.

The oracle is ``tests/data/openapi_schema.json``: Spotware's published openapi-proto-messages
(tag 91) as data, kept in the repository so that every clone runs these tests. Where the
project's shared reference copy (``../shared/openapi/schema.json``) is present, the test
also checks that the kept copy has not drifted from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from cmamd.protocol.proto import common_pb2, messages_pb2, model_pb2

SCHEMA = Path(__file__).resolve().parent / "data" / "openapi_schema.json"
SHARED_SCHEMA = Path(__file__).resolve().parents[1].parent / "shared" / "openapi" / "schema.json"
MODULES = (common_pb2, model_pb2, messages_pb2)


def _label(field: FieldDescriptor) -> str:
    # protobuf 7 dropped FieldDescriptor.label; these two predicates carry the same fact.
    if field.is_repeated:
        return "repeated"
    return "required" if field.is_required else "optional"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded = json.loads(SCHEMA.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.skipif(not SHARED_SCHEMA.exists(), reason=f"no shared reference at {SHARED_SCHEMA}")
def test_kept_oracle_matches_the_shared_reference(schema: dict[str, Any]) -> None:
    assert schema == json.loads(SHARED_SCHEMA.read_text())


def our_messages() -> list[Descriptor]:
    return [d for m in MODULES for d in m.DESCRIPTOR.message_types_by_name.values()]


def our_enums() -> list[EnumDescriptor]:
    return [d for m in MODULES for d in m.DESCRIPTOR.enum_types_by_name.values()]


def _default(field: FieldDescriptor) -> Any:
    if not field.has_default_value:
        return None
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return field.enum_type.values_by_number[field.default_value].name
    return field.default_value


def test_defines_the_messages_the_daemon_needs() -> None:
    names = {d.name for d in our_messages()}
    needed = {
        "ProtoMessage", "ProtoErrorRes", "ProtoHeartbeatEvent", "ProtoOAApplicationAuthReq",
        "ProtoOAAccountAuthReq", "ProtoOANewOrderReq", "ProtoOAExecutionEvent",
        "ProtoOAReconcileReq", "ProtoOARefreshTokenReq", "ProtoOAAccountDisconnectEvent",
        "ProtoOAAccountsTokenInvalidatedEvent", "ProtoOAClientDisconnectEvent",
        "ProtoOAOrderErrorEvent", "ProtoOAErrorRes", "ProtoOATraderUpdatedEvent",
    }  # fmt: skip
    assert needed <= names


@pytest.mark.parametrize("descriptor", our_messages(), ids=lambda d: d.name)
def test_message_matches_schema(descriptor: Descriptor, schema: dict[str, Any]) -> None:
    expected = schema["messages"].get(descriptor.name)
    assert expected is not None, f"{descriptor.name} is not a published message"
    ours = {f.name: f for f in descriptor.fields}
    assert set(ours) == set(expected), f"{descriptor.name}: field sets differ"
    for name, field in ours.items():
        want = expected[name]
        got = {
            "number": field.number,
            "label": _label(field),
            "type": field.type,
            "type_name": (
                field.message_type.name
                if field.message_type
                else field.enum_type.name
                if field.enum_type
                else None
            ),
            "default": _default(field),
        }
        assert got == want, f"{descriptor.name}.{name}"


@pytest.mark.parametrize("descriptor", our_enums(), ids=lambda d: d.name)
def test_enum_matches_schema(descriptor: EnumDescriptor, schema: dict[str, Any]) -> None:
    expected = schema["enums"].get(descriptor.name)
    assert expected is not None, f"{descriptor.name} is not a published enum"
    ours = {v.name: v.number for v in descriptor.values}
    assert ours == expected, f"{descriptor.name} values differ"

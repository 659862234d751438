"""The journal's record of an intent: its fields as plain JSON-able values.

Built on the copy path (the journal entry is written before the order is sent), so it is a
shallow read of the intent's fields, not ``dataclasses.asdict`` (which deep-copies).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from cmamd.replication.intents import Intent

_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(intent: Intent) -> tuple[str, ...]:
    kind = type(intent)
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(intent))
    return names


def payload_of(intent: Intent) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for name in _field_names(intent):
        value = getattr(intent, name)
        payload[name] = value.value if isinstance(value, Enum) else value
    return payload

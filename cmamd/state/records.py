"""What the state store holds, as plain values, and their JSON/row conversions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from cmamd.state.errors import StateError

CLOSED_LINK_STATUS = "closed"
LINK_IDENTITY = ("rule", "master_account_id", "follower_account_id", "key")

Outcome = Literal["done", "rejected", "unknown", "resolved"]
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
# An intent with one of these outcomes is finished; "unknown" still needs a reconcile.
SETTLED_OUTCOMES = frozenset({"done", "rejected", "resolved"})


@dataclass(frozen=True, slots=True, repr=False)
class StoredTokens:
    access_token: str
    refresh_token: str
    expires_at_ms: int | None = None
    updated_ms: int = 0

    def __repr__(self) -> str:
        return (
            f"StoredTokens(access_token=***, refresh_token=***, "
            f"expires_at_ms={self.expires_at_ms}, updated_ms={self.updated_ms})"
        )


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    intent_id: str
    follower_id: int
    key: str
    action: str
    client_order_id: str | None
    payload: dict[str, Any]
    created_ms: int
    outcome: str | None
    detail: str | None
    settled_ms: int | None

    @property
    def is_open(self) -> bool:
        return self.outcome not in SETTLED_OUTCOMES


def link_columns(link: Mapping[str, Any]) -> tuple[str, int, int, str, str]:
    # The common case in one pass (type() is exact: a bool is not taken for an int); any
    # doubt goes to the checks below, which name the problem.
    rule, master_id, follower_id = (
        link.get("rule"),
        link.get("master_account_id"),
        link.get("follower_account_id"),
    )
    key, status = link.get("key"), link.get("status")
    if (
        type(rule) is str
        and type(master_id) is int
        and type(follower_id) is int
        and type(key) is str
        and type(status) is str
    ):
        return rule, master_id, follower_id, key, status
    return _checked_link_columns(link)


def _checked_link_columns(link: Mapping[str, Any]) -> tuple[str, int, int, str, str]:
    missing = [name for name in (*LINK_IDENTITY, "status") if name not in link]
    if missing:
        raise StateError(f"link record lacks {', '.join(missing)}")
    rule, master_id, follower_id, key, status = (link[name] for name in (*LINK_IDENTITY, "status"))
    for name, value, kind in (
        ("rule", rule, str),
        ("master_account_id", master_id, int),
        ("follower_account_id", follower_id, int),
        ("key", key, str),
        ("status", status, str),
    ):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise StateError(f"link {name} must be {kind.__name__}, not {value!r}")
    return rule, master_id, follower_id, key, status


# Built once: json.dumps with options builds an encoder per call.
COMPACT_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def to_json(value: Mapping[str, Any]) -> str:
    try:
        return COMPACT_JSON.encode(value)
    except (TypeError, ValueError) as error:
        raise StateError(f"not storable as JSON: {error}") from error


def from_json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise StateError(f"stored record is not a JSON object: {text[:80]!r}")
    return value


def journal_entry(row: tuple[Any, ...]) -> JournalEntry:
    """A journal row, columns in the order of ``JOURNAL_COLUMNS``."""
    (seq, intent_id, follower_id, key, action, client_order_id, payload, created_ms, outcome,
     detail, settled_ms) = row  # fmt: skip
    return JournalEntry(
        seq, intent_id, follower_id, key, action, client_order_id, from_json(payload),
        created_ms, outcome, detail, settled_ms,
    )  # fmt: skip


JOURNAL_COLUMNS = (
    "seq, intent_id, follower_account_id, key, action, client_order_id, payload, "
    "created_ms, outcome, detail, settled_ms"
)

"""Identity of copied items: master item keys, follower labels, client order ids.

A master item is keyed ``"p<positionId>"`` (an open position) or ``"o<orderId>"`` (a pending
order). Every follower copy carries the label ``cm:<masterAccountId>:<key>``, so a copy can be
traced to its master in the broker's own records and found again after a restart that lost
the local state. Labels written by anything else (the user, another tool) never parse.

A client order id also names the daemon instance that sent it (``-<instance>``, four
characters kept in the state store), so that a second daemon copying onto the same
followers is recognised (identity.py). Ids too long for it keep the older form without
one; both forms parse.
"""

from __future__ import annotations

import re
from typing import Literal

LABEL_MAX = 100  # ProtoOANewOrderReq.label
CLIENT_ORDER_ID_MAX = 50  # ProtoOANewOrderReq.clientOrderId

KeyKind = Literal["p", "o"]

_ID = r"(0|[1-9][0-9]{0,18})"  # an int64 id, no leading zeros: one spelling per id
_KEY_RE = re.compile(rf"([po]){_ID}")
_LABEL_RE = re.compile(rf"cm:{_ID}:([po]{_ID})")
INSTANCE_LENGTH = 4
_INSTANCE = rf"[a-z0-9]{{{INSTANCE_LENGTH}}}"
_INSTANCE_RE = re.compile(_INSTANCE)
_CLIENT_ORDER_ID_RE = re.compile(rf"cm{_ID}-{_ID}-([po]{_ID})(?:-({_INSTANCE}))?")


def position_key(position_id: int) -> str:
    return f"p{position_id}"


def order_key(order_id: int) -> str:
    return f"o{order_id}"


def parse_key(key: str) -> tuple[KeyKind, int] | None:
    """``("p", 123)`` for ``"p123"``; None for anything that is not a key."""
    match = _KEY_RE.fullmatch(key)
    if match is None or int(match.group(2)) >= 2**63:
        return None
    kind: KeyKind = "p" if match.group(1) == "p" else "o"
    return kind, int(match.group(2))


def is_position_key(key: str) -> bool:
    parsed = parse_key(key)
    return parsed is not None and parsed[0] == "p"


def is_order_key(key: str) -> bool:
    parsed = parse_key(key)
    return parsed is not None and parsed[0] == "o"


def _require_key(key: str) -> None:
    if parse_key(key) is None:
        raise ValueError(f"not a master item key: {key!r}")


def _require_id(value: int, what: str) -> None:
    if not 0 <= value < 2**63:
        raise ValueError(f"{what} out of range: {value}")


def label(master_account_id: int, key: str) -> str:
    """The label every follower copy of master item ``key`` carries."""
    _require_id(master_account_id, "master account id")
    _require_key(key)
    return f"cm:{master_account_id}:{key}"


def parse_label(text: str) -> tuple[int, str] | None:
    """``(master_account_id, key)`` of a cmamd label; None for any other label."""
    match = _LABEL_RE.fullmatch(text)
    if match is None:
        return None
    master_account_id = int(match.group(1))
    if master_account_id >= 2**63 or int(match.group(3)) >= 2**63:
        return None
    return master_account_id, match.group(2)


def client_order_id(master_account_id: int, key: str, seq: int, instance: str = "") -> str:
    """Deterministic id of the ``seq``-th action on a key (echoed back in order events),
    naming the sending ``instance`` where the length allows."""
    _require_id(master_account_id, "master account id")
    _require_key(key)
    if seq < 1:
        raise ValueError(f"seq starts at 1: {seq}")
    if instance and _INSTANCE_RE.fullmatch(instance) is None:
        raise ValueError(f"not an instance id: {instance!r}")
    text = f"cm{seq}-{master_account_id}-{key}"
    if len(text) > CLIENT_ORDER_ID_MAX:
        raise ValueError(f"client order id longer than {CLIENT_ORDER_ID_MAX}: {text}")
    named = f"{text}-{instance}"
    return named if instance and len(named) <= CLIENT_ORDER_ID_MAX else text


def parse_client_order_id(text: str) -> tuple[int, str, int] | None:
    """``(master_account_id, key, seq)`` of a cmamd client order id; None otherwise."""
    match = _CLIENT_ORDER_ID_RE.fullmatch(text)
    if match is None:
        return None
    seq, master_account_id = int(match.group(1)), int(match.group(2))
    if seq < 1 or master_account_id >= 2**63 or int(match.group(4)) >= 2**63:
        return None
    return master_account_id, match.group(3), seq


def client_order_instance(text: str) -> str | None:
    """The instance a cmamd client order id names; None if none (or not a cmamd id)."""
    match = _CLIENT_ORDER_ID_RE.fullmatch(text)
    if match is None or parse_client_order_id(text) is None:
        return None
    return match.group(5)

"""Identity of copied items: follower labels and client order ids.

Both carry a master item key (cmamd/item_keys.py). Every follower copy carries the label
``cm:<masterAccountId>:<key>``, so a copy can be traced to its master in the broker's own
records and found again after a restart that lost the local state. Labels written by
anything else (the user, another tool) never parse.

A client order id also names the daemon instance that sent it (``-<instance>``, four
characters kept in the state store), so that a second daemon copying onto the same
followers is recognised (identity.py). Ids too long for it keep the older form without
one; both forms parse.
"""

from __future__ import annotations

import re

from cmamd.item_keys import ID_PATTERN, KEY_PATTERN, is_id, split_key

LABEL_MAX = 100  # ProtoOANewOrderReq.label
CLIENT_ORDER_ID_MAX = 50  # ProtoOANewOrderReq.clientOrderId

# groups: the master account id, the key, the key's id
_LABEL_RE = re.compile(rf"cm:({ID_PATTERN}):({KEY_PATTERN})")
INSTANCE_LENGTH = 4
_INSTANCE = rf"[a-z0-9]{{{INSTANCE_LENGTH}}}"
_INSTANCE_RE = re.compile(_INSTANCE)
# groups: seq, the master account id, the key, the key's id, the instance
_CLIENT_ORDER_ID_RE = re.compile(
    rf"cm({ID_PATTERN})-({ID_PATTERN})-({KEY_PATTERN})(?:-({_INSTANCE}))?"
)


def _require_id(value: int, what: str) -> None:
    if not is_id(value):
        raise ValueError(f"{what} out of range: {value}")


def label(master_account_id: int, key: str) -> str:
    """The label every follower copy of master item ``key`` carries."""
    _require_id(master_account_id, "master account id")
    split_key(key)
    return f"cm:{master_account_id}:{key}"


def parse_label(text: str) -> tuple[int, str] | None:
    """``(master_account_id, key)`` of a cmamd label; None for any other label."""
    match = _LABEL_RE.fullmatch(text)
    if match is None:
        return None
    master_account_id = int(match.group(1))
    if not is_id(master_account_id) or not is_id(int(match.group(3))):
        return None
    return master_account_id, match.group(2)


def client_order_id(master_account_id: int, key: str, seq: int, instance: str = "") -> str:
    """Deterministic id of the ``seq``-th action on a key (echoed back in order events),
    naming the sending ``instance`` where the length allows."""
    _require_id(master_account_id, "master account id")
    split_key(key)
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
    if seq < 1 or not is_id(master_account_id) or not is_id(int(match.group(4))):
        return None
    return master_account_id, match.group(3), seq


def client_order_instance(text: str) -> str | None:
    """The instance a cmamd client order id names; None if none (or not a cmamd id)."""
    match = _CLIENT_ORDER_ID_RE.fullmatch(text)
    if match is None or parse_client_order_id(text) is None:
        return None
    return match.group(5)

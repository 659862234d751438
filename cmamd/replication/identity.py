"""This daemon's instance identity, and noticing another copier on the same followers.

Two daemons on the same accounts (``cmamd.service`` and a ``cmamd@`` instance with other
state dirs, by mistake) would each open every copy, then close the other's back. Every
client order id names the sending instance (labels.py); the id is created once and kept
in the state store.

A foreign copier is recognised by what it does while we run, never by copies that merely
exist: after a lost state store the daemon gets a new id, and the copies its former self
left behind (even a pending one that fills now) are adopted, not taken for a rival's. So
only an order *newly placed* on a follower (ORDER_ACCEPTED) with a cmamd client order id
of one of our masters and another instance counts.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Collection

from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.replication.labels import (
    INSTANCE_LENGTH,
    client_order_instance,
    parse_client_order_id,
)
from cmamd.state.store import StateStore

META_KEY = "instance"
_ALPHABET = string.ascii_lowercase + string.digits


def instance_id(store: StateStore) -> str:
    """This state store's instance id, created on first use."""
    found = store.get_meta(META_KEY)
    if found is not None and len(found) == INSTANCE_LENGTH:
        return found
    created = "".join(secrets.choice(_ALPHABET) for _ in range(INSTANCE_LENGTH))
    store.set_meta(META_KEY, created)
    return created


def foreign_copier(
    event: pb.ProtoOAExecutionEvent, own: str, masters: Collection[int]
) -> str | None:
    """The other instance that just placed this order for one of ``masters``, if any."""
    if event.executionType != model_pb2.ORDER_ACCEPTED or not event.HasField("order"):
        return None
    text = event.order.clientOrderId
    if not text.startswith("cm"):
        return None
    parsed = parse_client_order_id(text)
    instance = client_order_instance(text)
    if parsed is None or instance is None or instance == own or parsed[0] not in masters:
        return None
    return instance

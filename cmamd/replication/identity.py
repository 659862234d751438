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
from collections.abc import Collection, Iterable

from cmamd.connection.client import OpenApiConnection
from cmamd.logs import get_logger
from cmamd.protocol.codec import Envelope
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.replication.labels import (
    INSTANCE_LENGTH,
    client_order_instance,
    parse_client_order_id,
)
from cmamd.state.store import StateStore

log = get_logger("cmamd.replication")

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


class CopierWatch:
    """Watches the followers' execution events for another instance's new copy orders;
    a follower where one appears is frozen (the replicator sends nothing more to it)."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.frozen: dict[int, str] = {}  # follower account id -> why
        self._masters_of: dict[int, set[int]] = {}  # follower id -> its masters' ids
        self._names: dict[int, set[str]] = {}
        self._watched: dict[int, OpenApiConnection] = {}  # by id()

    def watch(self, followers: Iterable[tuple[int, int, str, OpenApiConnection]]) -> None:
        """(follower id, master id, follower name, its connection) of every destination."""
        self._masters_of, self._names = {}, {}
        for follower_id, master_id, name, connection in followers:
            self._masters_of.setdefault(follower_id, set()).add(master_id)
            self._names.setdefault(follower_id, set()).add(name)
            if id(connection) not in self._watched:
                self._watched[id(connection)] = connection
                connection.add_listener(self.on_envelope)

    def on_envelope(self, envelope: Envelope) -> None:
        event = envelope.message
        if not isinstance(event, pb.ProtoOAExecutionEvent):
            return
        account_id = event.ctidTraderAccountId
        masters = self._masters_of.get(account_id)
        if not masters or account_id in self.frozen:
            return
        other = foreign_copier(event, self.instance, masters)
        if other is None:
            return
        self.frozen[account_id] = f"another cmamd (instance {other}) copies onto it"
        log.error(
            "another copier on this follower",
            reason="a second cmamd places copies on it: frozen until a restart",
            fix="stop one of the two daemons",
            follower=", ".join(sorted(self._names.get(account_id, ()))),
            follower_id=account_id,
            other_instance=other,
            own_instance=self.instance,
            client_order_id=event.order.clientOrderId,
        )

    def frozen_names(self) -> list[str]:
        return sorted({n for a in self.frozen for n in self._names.get(a, ())})

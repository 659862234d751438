"""The persisted record tying one master item to its copies on one follower.

A link is written BEFORE any order for its item is sent, so that after a crash the daemon
knows what it decided and what it may have sent (``seq``) even when the broker's answer was
lost. Its volumes are the *basis* of proportional following: the follower volume the copy
was sized to, and the master volume it corresponds to.

Intent and confirmed outcome are kept apart: ``OPENING`` is an open decided (and maybe
sent), ``OPEN`` a copy seen; ``master_sl``/``master_tp`` are the levels the copies are
meant to mirror, and ``levels_confirmed`` says whether the copies were seen carrying them.
Until they are, the planner compares the master's levels with the copies as the broker
reports them (an amend interrupted by a crash, or refused, is sent again), never with
the link alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar

from cmamd.item_keys import parse_key


class LinkStatus(StrEnum):
    OPENING = "opening"  # an order for the item was sent; no copy seen yet
    OPEN = "open"  # copies exist (or existed) and follow the master
    CLOSED = "closed"  # the copies are gone: the decision is over
    SKIPPED = "skipped"  # decided once not to copy (reason says why); never revisited
    REJECTED = "rejected"  # the broker refused the copy (reason = its error code)

    @property
    def active(self) -> bool:
        return self in (LinkStatus.OPENING, LinkStatus.OPEN)


@dataclass(frozen=True, slots=True)
class Link:
    rule: str
    master_account_id: int
    follower_account_id: int
    key: str
    status: LinkStatus
    master_volume: int = 0  # basis: the master volume that follower_volume corresponds to
    follower_volume: int = 0  # basis: what the copy was sized to
    master_sl: float | None = None  # the master levels last mirrored onto the copies
    master_tp: float | None = None
    origin_key: str | None = None  # position link: the master pending order that opened it
    fill_key: str | None = None  # pending-order link: the master position it fills into
    seq: int = 0  # actions sent so far; the next one is seq + 1 (feeds client_order_id)
    levels_confirmed: bool = True  # False: an amend of the copies' levels is not yet seen
    reason: str = ""  # why skipped / rejected / closed
    updated_ms: int = 0

    def __post_init__(self) -> None:
        for name in ("key", "origin_key", "fill_key"):
            value = getattr(self, name)
            if value is not None and not _is_item_key(value):
                raise ValueError(f"link {name} is not a master item key: {value!r}")
        if min(self.master_volume, self.follower_volume, self.seq) < 0:
            raise ValueError("link volumes and seq cannot be negative")

    @property
    def active(self) -> bool:
        return self.status.active

    # -- evolution; every change stamps updated_ms ---------------------------------------

    def with_status(self, status: LinkStatus, now_ms: int, reason: str = "") -> Link:
        return dataclasses.replace(self, status=status, reason=reason, updated_ms=now_ms)

    def opened(self, now_ms: int) -> Link:
        """A copy was seen (the executor confirms a fill, or the planner finds the copy)."""
        return self.with_status(LinkStatus.OPEN, now_ms)

    def rejected(self, reason: str, now_ms: int) -> Link:
        """The broker refused the order; ``reason`` is its error code."""
        return self.with_status(LinkStatus.REJECTED, now_ms, reason)

    def closed(self, now_ms: int, reason: str = "") -> Link:
        return self.with_status(LinkStatus.CLOSED, now_ms, reason)

    def rebased(self, master_volume: int, follower_volume: int, now_ms: int) -> Link:
        return dataclasses.replace(
            self, master_volume=master_volume, follower_volume=follower_volume, updated_ms=now_ms
        )

    def mirrored(
        self,
        master_sl: float | None,
        master_tp: float | None,
        now_ms: int,
        confirmed: bool = True,
    ) -> Link:
        return dataclasses.replace(
            self,
            master_sl=master_sl,
            master_tp=master_tp,
            levels_confirmed=confirmed,
            updated_ms=now_ms,
        )

    def advanced(self, actions: int, now_ms: int) -> Link:
        """``actions`` more actions are about to be sent for this item."""
        return dataclasses.replace(self, seq=self.seq + actions, updated_ms=now_ms)

    # -- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (floats are written with repr, so they read back exactly)."""
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["status"] = self.status.value
        if self.levels_confirmed:
            del data["levels_confirmed"]  # the default: records stay readable by older releases
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Link:
        """Inverse of to_dict; missing optional fields take their defaults, bad types raise."""
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown link fields: {', '.join(sorted(unknown))}")
        try:
            status = LinkStatus(data["status"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad link status: {data.get('status')!r}") from exc
        return cls(
            rule=_typed(data, "rule", str),
            master_account_id=_typed(data, "master_account_id", int),
            follower_account_id=_typed(data, "follower_account_id", int),
            key=_typed(data, "key", str),
            status=status,
            master_volume=_typed(data, "master_volume", int, 0),
            follower_volume=_typed(data, "follower_volume", int, 0),
            master_sl=_level(data, "master_sl"),
            master_tp=_level(data, "master_tp"),
            origin_key=_optional_str(data, "origin_key"),
            fill_key=_optional_str(data, "fill_key"),
            seq=_typed(data, "seq", int, 0),
            levels_confirmed=_flag(data, "levels_confirmed", True),
            reason=_typed(data, "reason", str, ""),
            updated_ms=_typed(data, "updated_ms", int, 0),
        )


@lru_cache(maxsize=4096)
def _is_item_key(value: str) -> bool:
    # every evolution of a link (one or two per plan) checks its keys again: remembered
    return parse_key(value) is not None


_MISSING: Any = object()
T = TypeVar("T")


def _typed(data: Mapping[str, Any], name: str, kind: type[T], default: T = _MISSING) -> T:
    if name not in data:
        if default is _MISSING:
            raise ValueError(f"link field {name} is missing")
        return default
    value = data[name]
    # bool is an int subclass; a flag where a number belongs is a corrupt record
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"link field {name} should be {kind.__name__}: {value!r}")
    return value


def _flag(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"link field {name} should be true or false: {value!r}")
    return value


def _level(data: Mapping[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"link field {name} should be a number: {value!r}")
    return float(value)


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"link field {name} should be a string: {value!r}")
    return value

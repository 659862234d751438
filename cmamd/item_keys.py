"""Master item keys: the one place that makes, parses and tells apart ``p<id>`` and ``o<id>``.

A master item is keyed ``"p<positionId>"`` (an open position) or ``"o<orderId>"`` (a pending
order). The key names the item in the replication queue, the links of the state store, the
labels and client order ids of follower copies, reports and logs.

This module imports nothing of cmamd, so that every layer that meets a key (accounts/,
state/, replication/, control/) can use it. It is not part of protocol/: a key is cmamd's
own naming, not the Open API's, and the simulator (which depends on protocol/ only) must
never share the daemon's reading of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum


class ItemKind(StrEnum):
    """The letter a key starts with."""

    POSITION = "p"
    ORDER = "o"


ItemKey = tuple[ItemKind, int]
"""A parsed key: ``(ItemKind.POSITION, 123)`` for ``"p123"`` (a plain tuple: parsing is on
the planner's hot path)."""


ID_MAX = 2**63 - 1  # the Open API's ids are int64
ID_PATTERN = r"(?:0|[1-9][0-9]{0,18})"
"""An id in a key, label or client order id: no sign, no leading zeros (one spelling per id);
the range is checked after matching (``is_id``)."""
_KIND_PATTERN = "[" + "".join(kind.value for kind in ItemKind) + "]"
KEY_PATTERN = f"{_KIND_PATTERN}({ID_PATTERN})"
"""A key inside a longer text, with ONE capturing group: the id, whose range the user of
the pattern checks with ``is_id``."""

_KEY_RE = re.compile(f"({_KIND_PATTERN})({ID_PATTERN})")
_KIND_OF = {kind.value: kind for kind in ItemKind}


def is_id(value: int) -> bool:
    return 0 <= value <= ID_MAX


_P = ItemKind.POSITION.value  # read once: an enum member's .value is a descriptor call
_O = ItemKind.ORDER.value


def position_key(position_id: int) -> str:
    return f"{_P}{position_id}"


def order_key(order_id: int) -> str:
    return f"{_O}{order_id}"


def parse_key(key: str) -> ItemKey | None:
    """``(ItemKind.POSITION, 123)`` (equal to ``("p", 123)``) for ``"p123"``; None for
    anything that is not a key."""
    match = _KEY_RE.fullmatch(key)
    if match is None:
        return None
    kind, digits = match.groups()
    item_id = int(digits)
    return (_KIND_OF[kind], item_id) if item_id <= ID_MAX else None


def split_key(key: str) -> ItemKey:
    """The parts of a key already checked where it came in (queue, links, the account cache);
    ValueError for anything else."""
    parsed = parse_key(key)
    if parsed is None:
        raise ValueError(f"not a master item key: {key!r}")
    return parsed


def is_position_key(key: str) -> bool:
    parsed = parse_key(key)
    return parsed is not None and parsed[0] is ItemKind.POSITION


def is_order_key(key: str) -> bool:
    parsed = parse_key(key)
    return parsed is not None and parsed[0] is ItemKind.ORDER


def ids_of(keys: Iterable[str], kind: ItemKind) -> set[int]:
    """The ids of the ``kind`` keys among ``keys`` (anything that is not a key is left out)."""
    return {p[1] for p in map(parse_key, keys) if p is not None and p[0] is kind}

"""The planner's edge: inputs it cannot plan from safely are refused, never crashed on.

The account sessions drop invalid wire data (``cmamd.accounts.wire_checks``), so nothing
here should ever trigger; it is the second line. A crash inside the planner would be
caught by the replication worker, but the key would then not be planned again until the
master touches it; a refusal is a note, and the next change of the item plans it anew.
Only the items the plan of ``key`` reads are checked, so one plan stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cmamd.accounts import wire_checks
from cmamd.accounts.model import AccountState, PendingOrder, Position
from cmamd.item_keys import ItemKind, parse_key
from cmamd.replication.labels import label


@dataclass(frozen=True, slots=True)
class Labelled:
    """The follower's items labelled for a key or the keys related to it by an origin:
    found in one pass over the follower, then read by the guard and the plan."""

    positions: list[Position] = field(default_factory=list)
    orders: list[PendingOrder] = field(default_factory=list)


def _related_labels(key: str, master_id: int, origins: Mapping[str, str]) -> set[str]:
    related = {key}
    origin = origins.get(key)
    if origin is not None:
        related.add(origin)
    related |= {p for p, o in origins.items() if o == key}
    return {label(master_id, k) for k in related if is_item_key(k)}


def labelled_for(
    key: str, master_id: int, follower: AccountState, origins: Mapping[str, str]
) -> Labelled:
    """One key's labelled items, by one pass over the follower."""
    texts = _related_labels(key, master_id, origins)
    return Labelled(
        [p for p in follower.positions.values() if p.label in texts],
        [o for o in follower.orders.values() if o.label in texts],
    )


LabelIndex = Mapping[str, Labelled]
"""The follower's items by label: built once when every key is planned (``plan_all``)."""


def index_labels(follower: AccountState) -> LabelIndex:
    index: dict[str, Labelled] = {}
    for position in follower.positions.values():
        index.setdefault(position.label, Labelled()).positions.append(position)
    for order in follower.orders.values():
        index.setdefault(order.label, Labelled()).orders.append(order)
    return index


def labelled_from(
    index: LabelIndex, key: str, master_id: int, origins: Mapping[str, str]
) -> Labelled:
    """One key's labelled items, looked up in ``index`` (grouped by label, where
    ``labelled_for`` keeps the follower's order: the plans sort what they read)."""
    found = Labelled()
    for text in _related_labels(key, master_id, origins):
        items = index.get(text)
        if items is not None:
            found.positions.extend(items.positions)
            found.orders.extend(items.orders)
    return found


def refusal(
    key: str, master: AccountState, follower: AccountState, labelled: Labelled
) -> str | None:
    """Why ``key`` cannot be planned from these states, or None when it can (``labelled``:
    the follower's items that carry its label or a related one, ``labelled_for``)."""
    parsed = parse_key(key)
    if parsed is None or not is_item_key(key):
        return f"not planned: {key!r} is not a master item key"
    kind, item_id = parsed
    master_problem = (
        _position_problem(master, item_id)
        if kind is ItemKind.POSITION
        else _order_problem(master, item_id)
    )
    if master_problem is not None:
        return f"not planned: the master's {master_problem}"
    for pos in labelled.positions:
        problem = wire_checks.position_problem(pos, follower.symbols_by_id, known_symbol=False)
        if problem is not None:
            return f"not planned: the follower's copy {problem}"
    for order in labelled.orders:
        problem = wire_checks.order_problem(order, follower.symbols_by_id, known_symbol=False)
        if problem is not None:
            return f"not planned: the follower's copy {problem}"
    return None


def is_item_key(key: str) -> bool:
    """``p<id>`` or ``o<id>`` with a positive id (the server numbers from 1)."""
    parsed = parse_key(key)
    return parsed is not None and parsed[1] > 0


def _position_problem(master: AccountState, item_id: int) -> str | None:
    pos = master.positions.get(item_id)
    if pos is None:
        return None
    return wire_checks.position_problem(pos, master.symbols_by_id, known_symbol=False)


def _order_problem(master: AccountState, item_id: int) -> str | None:
    order = master.orders.get(item_id)
    if order is None:
        return None
    return wire_checks.order_problem(order, master.symbols_by_id, known_symbol=False)

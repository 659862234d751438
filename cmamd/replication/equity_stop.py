"""The equity-stop policy, pure: which destinations trip, which stay stopped.

A destination with an ``equity_stop`` block trips when its follower's equity falls below
``below``: its copies are closed and it copies nothing more. The trip is a latch holding
the fingerprint of the block it tripped under (state/marks.py keeps it): it holds when
equity recovers, across restarts and across edits of the destination's other keys;
changing the block itself (its ``below``, or its ``rearm`` marker) re-arms it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from cmamd.config.diff import fingerprint_of
from cmamd.config.rules import Destination

if TYPE_CHECKING:
    from cmamd.replication.routes_from_config import DestinationFacts


def latch_held(stored: str, dest: Destination) -> str:
    """The latch to keep for ``dest`` given the ``stored`` one: its fingerprint when the
    stop holds (in the current form), "" when it does not (none configured, or re-armed)."""
    if dest.equity_stop is None or not stored:
        return ""
    current = fingerprint_of(dest.equity_stop)
    if stored == current:
        return current
    if stored == fingerprint_of(dest):
        # latched by a version that fingerprinted the whole destination: kept, in the
        # current form, so that editing another key no longer re-arms it
        return current
    return ""


@dataclass(frozen=True, slots=True)
class EquityStopTrip:
    facts: DestinationFacts
    equity: Decimal
    threshold: Decimal


def trips(
    facts: Iterable[DestinationFacts],
    equity_of: Mapping[str, Decimal],
    latched: Mapping[str, str],
) -> list[EquityStopTrip]:
    """Destinations whose stop trips now: an armed stop, the follower's equity known
    (``equity_of``: ready accounts by name) and below the threshold, not latched yet
    (``latched``: destination id -> stored fingerprint)."""
    tripped = []
    for fact in facts:
        stop = fact.dest.equity_stop
        if stop is None:
            continue
        equity = equity_of.get(fact.follower)
        if equity is None or equity >= stop.below:
            continue
        if latch_held(latched.get(fact.dest_id, ""), fact.dest):
            continue
        tripped.append(EquityStopTrip(fact, equity, stop.below))
    return tripped


def stopped(facts: Iterable[DestinationFacts], latched: Mapping[str, str]) -> list[str]:
    """``rule:follower`` of every destination its equity stop holds."""
    return [
        f"{fact.rule}:{fact.follower}"
        for fact in facts
        if fact.equity_stop_fingerprint
        and latched.get(fact.dest_id) == fact.equity_stop_fingerprint
    ]

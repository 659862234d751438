"""What the planner asks the executor to do on a follower account: one intent = one request.

Prices are real prices already rounded to the follower symbol's digits; volumes are in cents
and valid for the follower symbol; relative stop distances are integers in 1/100000 of a
price unit (docs/protocol.md §5-6). ``reduces_risk`` lets the executor send closes, cancels and
protection changes before anything that adds exposure; it is decided in one exhaustive
``match`` (each intent's property only reads it), so that mypy names it when a new intent
is added to ``Intent`` and not to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import assert_never

from cmamd.accounts.model import OrderKind, Side
from cmamd.replication.links import Link


@dataclass(frozen=True, slots=True)
class Skip:
    """Why an item is not copied (a decision, not an error)."""

    reason: str


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A market order; with ``slippage_points`` a market-range order around ``base_price``."""

    follower_account_id: int
    key: str
    symbol_id: int
    side: Side
    volume: int
    relative_stop_loss: int | None
    relative_take_profit: int | None
    label: str
    client_order_id: str
    slippage_points: int | None = None
    base_price: float | None = None

    @property
    def reduces_risk(self) -> bool:
        return reduces_risk(self)


@dataclass(frozen=True, slots=True)
class ClosePosition:
    follower_account_id: int
    key: str
    position_id: int
    volume: int  # the whole position or a part of it

    @property
    def reduces_risk(self) -> bool:
        return reduces_risk(self)


@dataclass(frozen=True, slots=True)
class AmendPositionProtection:
    """Set both levels: the server CLEARS a level left out of the request."""

    follower_account_id: int
    key: str
    position_id: int
    stop_loss: float | None
    take_profit: float | None

    @property
    def reduces_risk(self) -> bool:
        return reduces_risk(self)


@dataclass(frozen=True, slots=True)
class PlacePendingOrder:
    follower_account_id: int
    key: str
    symbol_id: int
    side: Side
    kind: OrderKind  # LIMIT or STOP
    volume: int
    price: float  # limit price for LIMIT, stop price for STOP
    stop_loss: float | None
    take_profit: float | None
    expiration_ms: int | None
    label: str
    client_order_id: str

    @property
    def reduces_risk(self) -> bool:
        return reduces_risk(self)


@dataclass(frozen=True, slots=True)
class AmendPendingOrder:
    """Every field is the desired value (the request replaces them all)."""

    follower_account_id: int
    key: str
    order_id: int
    kind: OrderKind  # of the order being amended: says whether price is a limit or stop price
    volume: int
    price: float
    stop_loss: float | None
    take_profit: float | None
    expiration_ms: int | None

    @property
    def reduces_risk(self) -> bool:
        return reduces_risk(self)


@dataclass(frozen=True, slots=True)
class CancelPendingOrder:
    follower_account_id: int
    key: str
    order_id: int

    @property
    def reduces_risk(self) -> bool:
        return reduces_risk(self)


Intent = (
    OpenPosition
    | ClosePosition
    | AmendPositionProtection
    | PlacePendingOrder
    | AmendPendingOrder
    | CancelPendingOrder
)


def reduces_risk(intent: Intent) -> bool:
    """Closes, cancels and protection changes reduce exposure; opens, placements and
    amendments of a pending order (its volume or price may grow) do not."""
    match intent:
        case ClosePosition() | AmendPositionProtection() | CancelPendingOrder():
            return True
        case OpenPosition() | PlacePendingOrder() | AmendPendingOrder():
            return False
        case _:
            assert_never(intent)


@dataclass(frozen=True, slots=True)
class PlanNote:
    """Why a plan decided what it did (or nothing), as a log line's data: a fixed ``event``
    ("copy skipped", "copy waiting", ...), a short human ``reason``, quantities in
    ``fields``."""

    event: str
    reason: str
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """What to do for one master item key on one follower.

    ``link`` is the record to persist BEFORE sending ``intents`` (None: the stored link, if
    any, stays as it is). ``notes`` are human reasons for what was (not) decided.
    """

    key: str
    intents: list[Intent] = field(default_factory=list)
    link: Link | None = None
    notes: list[PlanNote] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.intents and self.link is None and not self.notes

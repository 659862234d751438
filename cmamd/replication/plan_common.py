"""Shared machinery of the planner: the copy target, one key's inputs, the plan builder,
and the small rules every item kind uses (sides, protection levels, netting, readiness).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from cmamd.accounts.model import AccountKind, AccountState, OrderKind, Side, SymbolSpec
from cmamd.config.rules import CopyMode, Destination, Sides, VolumeMode
from cmamd.protocol.units import PRICE_SCALE, round_price
from cmamd.replication import labels
from cmamd.replication.input_guard import Labelled
from cmamd.replication.intents import (
    Intent,
    KeyPlan,
    OpenPosition,
    PlacePendingOrder,
    PlanNote,
    Skip,
)
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.sizing import SizingContext

MARKET_KINDS = frozenset({OrderKind.MARKET, OrderKind.MARKET_RANGE})

QuoteToDeposit = Callable[[SymbolSpec], Decimal | None]


@dataclass(frozen=True, slots=True)
class CopyTarget:
    """One destination of one rule, bound to account ids."""

    rule: str
    dest: Destination
    master_account_id: int
    follower_account_id: int
    started_ms: int  # when this destination started; master items older are "existing"
    liquidate: bool = False  # equity stop: the target is 0 everywhere
    instance: str = ""  # this daemon's instance id, named in client order ids


@dataclass(frozen=True, slots=True)
class KeyInputs:
    target: CopyTarget
    key: str
    item_id: int
    master: AccountState
    follower: AccountState
    link: Link | None
    now_ms: int
    origins: Mapping[str, str]
    quote_to_deposit: QuoteToDeposit
    busy_symbols: Collection[int]
    labelled: Labelled  # the follower's items carrying this key's label or a related one
    # another key's link (the pending order a position filled from), looked up on demand
    link_of: Callable[[str], Link | None] = lambda _key: None

    @property
    def dest(self) -> Destination:
        return self.target.dest

    def label_of(self, key: str) -> str:
        return labels.label(self.target.master_account_id, key)


class PlannerBug(RuntimeError):
    """An invariant of the planner does not hold (never a reason found in the input)."""


class PlanBuilder:
    """Collects one key's intents and link changes; numbers actions from the link's seq."""

    def __init__(self, inputs: KeyInputs) -> None:
        self._inputs = inputs
        self._base_seq = inputs.link.seq if inputs.link is not None else 0
        self.link = inputs.link
        self.intents: list[Intent] = []
        self.notes: list[PlanNote] = []

    def note(self, event: str, reason: str, **fields: object) -> None:
        """``event`` is a fixed name ("copy skipped"); quantities go in ``fields``."""
        self.notes.append(PlanNote(event, reason, fields))

    def held_link(self) -> Link:
        """The link a step that follows existing copies works on; its callers only run
        once one is set, so a missing one is a bug in the planner, reported as such."""
        if self.link is None:
            raise PlannerBug(f"{self._inputs.key}: a step that needs a link ran without one")
        return self.link

    def next_client_order_id(self) -> str:
        """The id of the intent about to be added (call right before ``add``)."""
        seq = self._base_seq + len(self.intents) + 1
        target = self._inputs.target
        return labels.client_order_id(
            target.master_account_id, self._inputs.key, seq, target.instance
        )

    def add(self, intent: Intent) -> None:
        self.intents.append(intent)

    def new_link(
        self,
        status: LinkStatus,
        reason: str = "",
        master_volume: int = 0,
        follower_volume: int = 0,
    ) -> Link:
        """A fresh decision for the key; keeps the numbering of any previous link."""
        target, now = self._inputs.target, self._inputs.now_ms
        previous = self.link
        return Link(
            rule=target.rule,
            master_account_id=target.master_account_id,
            follower_account_id=target.follower_account_id,
            key=self._inputs.key,
            status=status,
            master_volume=master_volume,
            follower_volume=follower_volume,
            origin_key=previous.origin_key if previous is not None else None,
            fill_key=previous.fill_key if previous is not None else None,
            seq=self._base_seq,
            reason=reason,
            updated_ms=now,
        )

    def set_status(self, status: LinkStatus, reason: str = "") -> None:
        """Move the link (created if missing) to ``status``; a no-op when already there."""
        if self.link is None:
            self.link = self.new_link(status, reason)
        elif self.link.status is not status:
            self.link = self.link.with_status(status, self._inputs.now_ms, reason)

    def build(self) -> KeyPlan:
        link = self.link
        if self.intents:
            if link is not None:
                link = link.advanced(len(self.intents), self._inputs.now_ms)
            elif any(isinstance(i, OpenPosition | PlacePendingOrder) for i in self.intents):
                # a new order must be numbered by a persisted link, or a resend after a
                # crash could not be recognised
                raise AssertionError(f"{self._inputs.key}: a new order without a link")
        if link == self._inputs.link:
            link = None  # unchanged: nothing to persist
        return KeyPlan(self._inputs.key, list(self.intents), link, list(self.notes))


# -- sides and protection levels -----------------------------------------------------------


def follower_side(dest: Destination, master_side: Side) -> Side:
    return master_side.opposite if dest.reverse else master_side


def follower_kind(dest: Destination, master_kind: OrderKind) -> OrderKind:
    if not dest.reverse:
        return master_kind
    # a reversed limit (buy below the market) is a stop (sell below the market), and back
    swapped = {OrderKind.LIMIT: OrderKind.STOP, OrderKind.STOP: OrderKind.LIMIT}
    return swapped.get(master_kind, master_kind)


def side_selected(dest: Destination, master_side: Side) -> Skip | None:
    if dest.sides is Sides.BOTH or dest.sides.value == master_side.value:
        return None
    return Skip(f"sides: {dest.sides.value} only, the master trade is a {master_side.value}")


def follower_levels(
    dest: Destination, stop_loss: float | None, take_profit: float | None
) -> tuple[float | None, float | None]:
    """The master's levels as the follower's (stop, take-profit): swapped when reversed,
    because a reversed copy loses where the master gains."""
    return (take_profit, stop_loss) if dest.reverse else (stop_loss, take_profit)


def rounded(level: float | None, digits: int) -> float | None:
    return None if level is None else round_price(level, digits)


def relative_distance(
    entry: float, level: float | None, side: Side, is_stop: bool, digits: int
) -> int | None:
    """A level as a positive distance from entry in 1/100000, on the follower's digits.

    None when absent or on the wrong side of entry for its role (a stop already in profit
    cannot be expressed as a distance; it is set by an amend once the copy exists).
    """
    if level is None:
        return None
    entry_d, level_d = Decimal(repr(entry)), Decimal(repr(level))
    below_entry = (side is Side.BUY) == is_stop  # a buy's stop and a sell's target
    distance = entry_d - level_d if below_entry else level_d - entry_d
    quantum = Decimal(1).scaleb(-min(max(digits, 0), 5))
    points = int(distance.quantize(quantum, rounding=ROUND_HALF_EVEN) * PRICE_SCALE)
    return points if points > 0 else None


# -- readiness, netting, sizing inputs -----------------------------------------------------


def not_ready(inputs: KeyInputs, master_symbol_id: int) -> str | None:
    """Why a decision cannot be taken yet (state still loading); None when it can."""
    if inputs.master.symbols_by_id.get(master_symbol_id) is None:
        return f"master symbol id {master_symbol_id} not loaded yet"
    if inputs.follower.trader is None or not inputs.follower.symbols_by_name:
        return "follower account not loaded yet"
    if inputs.master.trader is None:
        return "master account not loaded yet"
    return None


def netted_conflict(
    inputs: KeyInputs, spec: SymbolSpec, own_labels: Collection[str]
) -> Skip | None:
    """A netted follower has one position per symbol: never mix two items' volumes in it."""
    trader = inputs.follower.trader
    if trader is None or trader.kind is not AccountKind.NETTED:
        return None
    if spec.symbol_id in inputs.busy_symbols:
        return Skip(f"netted follower: {spec.name} is being traded for another item")
    holders = [p.label for p in inputs.follower.positions.values() if p.symbol_id == spec.symbol_id]
    holders += [o.label for o in inputs.follower.orders.values() if o.symbol_id == spec.symbol_id]
    foreign = sorted({text or "unlabelled" for text in holders if text not in own_labels})
    if foreign:
        return Skip(
            f"netted follower already holds {spec.name} for {', '.join(foreign)}; "
            "one position per symbol, volumes are not mixed"
        )
    return None


def short_selling(spec: SymbolSpec, side: Side) -> Skip | None:
    if side is Side.SELL and not spec.short_selling:
        return Skip(f"short selling {spec.name} is not allowed on the follower")
    return None


def sizing_context(
    inputs: KeyInputs,
    spec: SymbolSpec,
    entry: float,
    stop_loss: float | None,
    take_profit: float | None,
) -> SizingContext:
    master, follower = inputs.master, inputs.follower
    copy_stop, _ = follower_levels(inputs.dest, stop_loss, take_profit)
    risk = inputs.dest.volume.mode is VolumeMode.RISK_PERCENT
    return SizingContext(
        master_balance=master.trader.balance if master.trader is not None else None,
        master_equity=master.equity,
        follower_balance=follower.trader.balance if follower.trader is not None else None,
        follower_equity=follower.equity,
        entry_price=entry,
        stop_loss=copy_stop,
        quote_to_deposit=inputs.quote_to_deposit(spec) if risk else None,
    )


def opening_blocked(inputs: KeyInputs) -> Skip | None:
    """Rule-level reasons not to open anything new for a master item."""
    if inputs.target.liquidate:
        return Skip("equity stop: liquidating")
    if inputs.dest.mode is CopyMode.CLOSE_ONLY:
        return Skip("mode close_only: no new copies")
    return None

"""What each follower should hold after the demo, computed from the rules, and the check.

Independent of the planner: it sizes each master position from the rule with the pure
sizing functions and compares with what the simulated broker reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from cmamd.accounts.model import Position, Side, SymbolSpec
from cmamd.config.rules import Destination
from cmamd.replication.intents import Skip
from cmamd.replication.mapping import map_symbol
from cmamd.replication.sizing import SizingContext, scale_volume, size_volume


@dataclass(frozen=True, slots=True)
class MasterTrade:
    """A master position the script opened: its volume then, and the accounts' equity then."""

    position: Position
    symbol: str
    opened_volume: int
    master_equity: Decimal
    follower_equity: dict[str, Decimal]
    origin_order: int | None = None  # the master pending order that opened it


@dataclass(frozen=True, slots=True)
class Expected:
    symbol: str
    side: Side
    volume: int
    stop_loss: float | None
    take_profit: float | None


def expected_copy(
    dest: Destination,
    trade: MasterTrade,
    master_now: Position,
    master_specs: dict[str, SymbolSpec],
    follower_specs: dict[str, SymbolSpec],
) -> Expected | str:
    """The copy ``dest`` prescribes for a master position, or why there is none."""
    spec = map_symbol(dest.symbols, trade.symbol, follower_specs)
    if isinstance(spec, Skip):
        return spec.reason
    equity = trade.follower_equity[dest.account]
    ctx = SizingContext(
        master_balance=trade.master_equity,
        master_equity=trade.master_equity,
        follower_balance=equity,
        follower_equity=equity,
        entry_price=trade.position.entry_price,
        stop_loss=trade.position.stop_loss,
        quote_to_deposit=Decimal(1),
    )
    initial = size_volume(dest.volume, trade.opened_volume, master_specs[trade.symbol], spec, ctx)
    if isinstance(initial, Skip):
        return initial.reason
    volume = scale_volume(initial, trade.opened_volume, master_now.volume, spec)
    side = master_now.side.opposite if dest.reverse else master_now.side
    sl, tp = master_now.stop_loss, master_now.take_profit
    if dest.reverse:
        sl, tp = tp, sl
    if not dest.copy_sl_tp:
        sl = tp = None
    return Expected(spec.name, side, volume, sl, tp)


def compare(expected: Expected, actual: list[Position], names: dict[int, str]) -> list[str]:
    """Differences between the prescribed copy and the follower's copies ([] = match)."""
    if len(actual) != 1:
        return [f"expected one copy, found {len(actual)}"]
    copy = actual[0]
    problems = []
    if names.get(copy.symbol_id) != expected.symbol:
        problems.append(f"symbol {names.get(copy.symbol_id)} != {expected.symbol}")
    if copy.side is not expected.side:
        problems.append(f"side {copy.side.value} != {expected.side.value}")
    if copy.volume != expected.volume:
        problems.append(f"volume {copy.volume} != {expected.volume}")
    for what, got, want in (
        ("SL", copy.stop_loss, expected.stop_loss),
        ("TP", copy.take_profit, expected.take_profit),
    ):
        if want is not None and (got is None or abs(got - want) > 1e-9):
            problems.append(f"{what} {got} != {want}")
    return problems

"""What each follower should hold after the demo, computed from the rules, and the check.

Deliberately shares no code with the copier: it reads the demo's rules as written (the
plain dicts of ``run.FOLLOWERS``), the symbols as the simulated broker lists them, and does
its own small arithmetic in exact fractions, so a bug in the daemon's sizing or mapping
cannot make the verdict agree with it. It covers only what the demo's rules use:
``multiplier`` and ``equity_ratio`` volumes, an ``add_suffix`` symbol mapping, ``reverse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from cmamd.sim.config import SymbolConfig
from cmamd.sim.snapshots import Position, Side


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
    follower: str,
    rule: dict[str, Any],
    trade: MasterTrade,
    master_now: Position,
    master_symbols: dict[str, SymbolConfig],
    follower_symbols: dict[str, SymbolConfig],
) -> Expected | str:
    """The copy ``rule`` prescribes for a master position, or why there is none."""
    name = trade.symbol + rule.get("symbols", {}).get("add_suffix", "")
    symbol = follower_symbols.get(name)
    if symbol is None:
        return f"the follower's broker has no {name}"
    lots = follower_lots(rule["volume"], trade, follower, master_symbols[trade.symbol])
    if isinstance(lots, str):
        return lots
    opened = down_to_step(lots * symbol.lot_size, symbol)
    if opened < symbol.min_volume:
        return f"{float(lots)} lots is below the minimum of {name}"
    volume = opened
    if master_now.volume != trade.opened_volume:  # partly closed: keep the same proportion
        volume = down_to_step(Fraction(opened * master_now.volume, trade.opened_volume), symbol)
        if volume < symbol.min_volume:
            return f"the remainder of {name} is below its minimum, so it was closed"
    reverse = bool(rule.get("reverse", False))
    side = master_now.side
    stop_loss, take_profit = master_now.stop_loss, master_now.take_profit
    if reverse:
        side = Side.SELL if side is Side.BUY else Side.BUY
        stop_loss, take_profit = take_profit, stop_loss
    if not rule.get("copy_sl_tp", True):
        stop_loss = take_profit = None
    return Expected(name, side, volume, stop_loss, take_profit)


def follower_lots(
    volume_rule: dict[str, Any], trade: MasterTrade, follower: str, master_symbol: SymbolConfig
) -> Fraction | str:
    master_lots = Fraction(trade.opened_volume, master_symbol.lot_size)
    value = Fraction(str(volume_rule["value"]))
    mode = volume_rule["mode"]
    if mode == "multiplier":
        return master_lots * value
    if mode == "equity_ratio":
        ratio = Fraction(trade.follower_equity[follower]) / Fraction(trade.master_equity)
        return master_lots * ratio * value
    return f"the demo's verdict does not model volume mode {mode!r}"


def down_to_step(volume: Fraction | int, symbol: SymbolConfig) -> int:
    """The largest multiple of the symbol's step not above ``volume``, within its maximum."""
    steps = int(volume // symbol.step_volume)  # floor: a copy is never bigger than asked
    return min(
        steps * symbol.step_volume, symbol.max_volume - symbol.max_volume % symbol.step_volume
    )


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

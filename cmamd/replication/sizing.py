"""How big a copy is: a destination's ``volume:`` rule applied to a master trade.

Everything is exact: lots are Decimal ratios of integer volumes (cents of a unit), config
values are Decimal, prices enter through their shortest repr; the result is an integer
volume that is a multiple of the follower symbol's step and never more than the rule asked
for (rounding is always down). A copy that cannot be sized is a Skip with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from cmamd.accounts.model import SymbolSpec
from cmamd.config.rules import VolumeMode, VolumeRule
from cmamd.protocol.units import lots_to_volume, volume_to_lots
from cmamd.replication.intents import Skip


@dataclass(frozen=True, slots=True)
class SizingContext:
    """Account figures in deposit currency, and the trade's prices as the master has them."""

    master_balance: Decimal | None
    master_equity: Decimal | None
    follower_balance: Decimal | None
    follower_equity: Decimal | None
    entry_price: float
    stop_loss: float | None  # the level at which the copy's loss is realised (risk_percent)
    quote_to_deposit: Decimal | None  # follower symbol: 1 unit of quote currency in deposit


def floor_to_step(volume: Decimal | int, step: int) -> int:
    """The largest multiple of ``step`` not above ``volume`` (a step <= 0 counts as 1)."""
    unit = max(step, 1)
    return int(Decimal(volume) // unit) * unit if volume > 0 else 0


def volume_cap(rule: VolumeRule, spec: SymbolSpec) -> int | None:
    """Most volume one copy may have: the symbol's maxVolume and the rule's max_lots, on
    the step grid. None when neither bounds it (a maxVolume <= 0 means the broker sent none).
    """
    caps: list[int] = []
    if spec.max_volume > 0:
        caps.append(floor_to_step(spec.max_volume, spec.step_volume))
    if rule.max_lots is not None:
        caps.append(floor_to_step(lots_to_volume(rule.max_lots, spec.lot_size), spec.step_volume))
    return min(caps) if caps else None


def rule_lots(
    rule: VolumeRule,
    master_volume: int,
    master_spec: SymbolSpec,
    follower_spec: SymbolSpec,
    ctx: SizingContext,
) -> Decimal | Skip:
    """Follower lots the rule asks for, before any symbol constraint."""
    master_lots = volume_to_lots(master_volume, master_spec.lot_size)
    mode = rule.mode
    if mode is VolumeMode.MULTIPLIER:
        return master_lots * rule.value
    if mode is VolumeMode.FIXED_LOTS:
        return rule.value
    if mode is VolumeMode.BALANCE_RATIO:
        return _ratio_lots(
            master_lots, rule.value, ctx.follower_balance, ctx.master_balance, "balance"
        )
    if mode is VolumeMode.EQUITY_RATIO:
        return _ratio_lots(
            master_lots, rule.value, ctx.follower_equity, ctx.master_equity, "equity"
        )
    return _risk_lots(rule.value, follower_spec, ctx)


def _ratio_lots(
    master_lots: Decimal,
    value: Decimal,
    follower: Decimal | None,
    master: Decimal | None,
    what: str,
) -> Decimal | Skip:
    if follower is None or master is None:
        return Skip(f"{what}_ratio needs both accounts' {what}, which is unknown")
    if master <= 0:
        return Skip(f"{what}_ratio: the master's {what} is {master}")
    return master_lots * follower / master * value


def _risk_lots(percent: Decimal, spec: SymbolSpec, ctx: SizingContext) -> Decimal | Skip:
    if ctx.stop_loss is None:
        return Skip("risk_percent needs a stop loss")
    if ctx.follower_equity is None:
        return Skip("risk_percent needs the follower's equity, which is unknown")
    if ctx.quote_to_deposit is None:
        return Skip(f"risk_percent needs a {spec.name} quote->deposit rate, which is unknown")
    distance = abs(_exact(ctx.entry_price) - _exact(ctx.stop_loss))
    # lot_size is in cents of a unit; a price move of 1 changes a lot's value by lot units
    loss_per_lot = Decimal(spec.lot_size) / 100 * distance * ctx.quote_to_deposit
    if loss_per_lot <= 0:
        return Skip("risk_percent: the stop loss is at the entry price")
    return ctx.follower_equity * percent / 100 / loss_per_lot


def _exact(price: float) -> Decimal:
    """The decimal the price was written as (repr), not the binary float's expansion."""
    return Decimal(repr(price))


def fit_volume(rule: VolumeRule, lots: Decimal, spec: SymbolSpec) -> int | Skip:
    """Lots -> a volume the follower symbol accepts: the rule's clamps, then the symbol's."""
    if lots <= 0:
        return Skip(f"the volume rule gives {_show(lots)} lots")
    if rule.min_lots is not None:
        lots = max(lots, rule.min_lots)
    if rule.max_lots is not None:
        lots = min(lots, rule.max_lots)
    volume = floor_to_step(lots_to_volume(lots, spec.lot_size), spec.step_volume)
    if spec.max_volume > 0:
        volume = min(volume, floor_to_step(spec.max_volume, spec.step_volume))
    if volume < spec.min_volume or volume <= 0:
        if not rule.force_min:
            return Skip(
                f"{_show(lots)} lots ({volume} cents after rounding) is below the symbol "
                f"minimum {spec.min_volume} cents of {spec.name}"
            )
        if spec.max_volume > 0 and spec.min_volume > spec.max_volume:
            return Skip(f"{spec.name}: symbol minimum above its maximum")
        volume = spec.min_volume
    if volume <= 0:
        return Skip(f"{spec.name} has no positive tradable volume")
    return volume


def size_volume(
    rule: VolumeRule,
    master_volume: int,
    master_spec: SymbolSpec,
    follower_spec: SymbolSpec,
    ctx: SizingContext,
) -> int | Skip:
    """The follower volume (cents) for a new copy of a master trade of ``master_volume``."""
    if master_volume <= 0:
        return Skip(f"the master volume is {master_volume}")
    lots = rule_lots(rule, master_volume, master_spec, follower_spec, ctx)
    if isinstance(lots, Skip):
        return lots
    return fit_volume(rule, lots, follower_spec)


def scale_volume(follower_basis: int, master_basis: int, master_now: int, spec: SymbolSpec) -> int:
    """Proportional follow of a master volume change: the follower volume now due.

    floor_to_step(follower_basis x master_now / master_basis) in integers; a result below
    the symbol minimum is 0 (such a remainder is closed, not kept). An unchanged master
    keeps the basis as it is, even one that force_min put off the step grid.
    """
    if follower_basis <= 0 or master_basis <= 0 or master_now <= 0:
        return 0
    if master_now == master_basis:
        return follower_basis
    volume = floor_to_step(follower_basis * master_now // master_basis, spec.step_volume)
    return volume if volume >= max(spec.min_volume, 1) else 0


def _show(lots: Decimal) -> str:
    return format(lots.quantize(Decimal("1e-8")).normalize(), "f")

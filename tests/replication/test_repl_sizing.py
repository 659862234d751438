from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from cmamd.accounts.model import SymbolSpec
from cmamd.config.rules import VolumeRule
from cmamd.replication.intents import Skip
from cmamd.replication.sizing import (
    SizingContext,
    floor_to_step,
    scale_volume,
    size_volume,
    volume_cap,
)

from .repl_kit import EURUSD, US30, XAUUSD

FX, GOLD, INDEX = EURUSD, XAUUSD, US30  # lots 10_000_000 / 10_000 / 100; steps 1e5 / 100 / 10


def ctx(**kw: Any) -> SizingContext:
    fields: dict[str, Any] = {
        "master_balance": Decimal("10000"),
        "master_equity": Decimal("10000"),
        "follower_balance": Decimal("5000"),
        "follower_equity": Decimal("4000"),
        "entry_price": 1.1,
        "stop_loss": None,
        "quote_to_deposit": None,
    }
    fields.update(kw)
    return SizingContext(**fields)


def vol(**kw: Any) -> VolumeRule:
    return VolumeRule.model_validate(kw)


def size(
    rule: VolumeRule,
    master_volume: int,
    master_spec: SymbolSpec = FX,
    follower_spec: SymbolSpec = FX,
    **context: Any,
) -> int | Skip:
    return size_volume(rule, master_volume, master_spec, follower_spec, ctx(**context))


@pytest.mark.parametrize(
    ("value", "master_volume", "spec", "expected"),
    [
        ("1", 10_000_000, FX, 10_000_000),  # 1 lot -> 1 lot
        ("0.5", 10_000_000, FX, 5_000_000),
        ("3", 100_000, FX, 300_000),  # 3 x 0.01 lots is exactly 0.03 lots
        ("0.1", 3_000_000, FX, 300_000),  # 0.1 x 0.3 lots: 0.03 exactly, not 0.0299999
        ("1.5", 10_000, GOLD, 15_000),
        ("0.33", 100, INDEX, 30),  # 0.33 lots of a 100-cent lot = 33 -> 30 on a step of 10
    ],
)
def test_multiplier(value: str, master_volume: int, spec: SymbolSpec, expected: int) -> None:
    assert size(vol(value=value), master_volume, spec, spec) == expected


def test_lots_carry_across_lot_sizes() -> None:
    # 2 FX-style lots on the master's gold (lot 10_000) is 2 lots on a follower quoting 100 oz
    # as 10_000 cents too, but an index lot of 100: lots are lots, whatever the lot size
    assert size(vol(value="1"), 20_000, GOLD, GOLD) == 20_000
    assert size(vol(value="1"), 20_000, GOLD, INDEX) == 200


def test_fixed_lots_ignores_the_master_volume() -> None:
    rule = vol(mode="fixed_lots", value="0.25")
    assert size(rule, 10_000_000) == 2_500_000
    assert size(rule, 100_000) == 2_500_000
    assert size(rule, 500, GOLD, GOLD) == 2_500


def test_balance_ratio_and_equity_ratio() -> None:
    # 1 lot x 5000/10000 x 1 = 0.5 lot; equity 4000/10000 -> 0.4 lot
    assert size(vol(mode="balance_ratio"), 10_000_000) == 5_000_000
    assert size(vol(mode="equity_ratio"), 10_000_000) == 4_000_000
    assert size(vol(mode="balance_ratio", value="2"), 10_000_000) == 10_000_000
    # a third of a lot rounds down to the step, never up
    assert size(vol(mode="balance_ratio"), 10_000_000, follower_balance=Decimal(10000) / 3) == (
        3_300_000
    )


def test_ratio_modes_skip_without_figures() -> None:
    skip = size(vol(mode="equity_ratio"), 10_000_000, follower_equity=None)
    assert isinstance(skip, Skip) and "equity" in skip.reason
    skip = size(vol(mode="balance_ratio"), 10_000_000, master_balance=Decimal(0))
    assert isinstance(skip, Skip)
    skip = size(vol(mode="balance_ratio"), 10_000_000, follower_balance=Decimal(0))
    assert isinstance(skip, Skip)  # zero lots


def test_risk_percent_loses_the_given_share_at_the_stop() -> None:
    # 1% of 4000 = 40 at risk; a 0.0050 stop on 100,000 units loses 500 per lot at rate 1
    # -> 0.08 lots
    rule = vol(mode="risk_percent", value="1")
    result = size(rule, 10_000_000, stop_loss=1.095, quote_to_deposit=Decimal(1))
    assert result == 800_000
    # the same with a quote->deposit rate of 0.5: each lot loses half as much -> 0.16 lots
    result = size(rule, 10_000_000, stop_loss=1.095, quote_to_deposit=Decimal("0.5"))
    assert result == 1_600_000
    # a stop above entry (a sell) risks the same distance
    result = size(rule, 10_000_000, stop_loss=1.105, quote_to_deposit=Decimal(1))
    assert result == 800_000
    # gold: 100 oz lot, stop 10.00 away -> 1000 per lot; 40 / 1000 = 0.04 lots = 400 cents
    result = size(
        rule, 100, GOLD, GOLD, entry_price=2000.0, stop_loss=1990.0, quote_to_deposit=Decimal(1)
    )
    assert result == 400


@pytest.mark.parametrize(
    ("context", "why"),
    [
        ({"stop_loss": None, "quote_to_deposit": Decimal(1)}, "needs a stop loss"),
        ({"stop_loss": 1.095, "quote_to_deposit": None}, "rate"),
        ({"stop_loss": 1.095, "quote_to_deposit": Decimal(1), "follower_equity": None}, "equity"),
        ({"stop_loss": 1.1, "quote_to_deposit": Decimal(1)}, "at the entry"),
    ],
)
def test_risk_percent_skips_without_what_it_needs(context: dict[str, Any], why: str) -> None:
    skip = size(vol(mode="risk_percent", value="1"), 10_000_000, **context)
    assert isinstance(skip, Skip) and why in skip.reason


def test_rounding_is_always_down_to_the_step() -> None:
    assert size(vol(value="0.0199"), 10_000_000) == 100_000  # 0.0199 lots -> 0.01
    assert size(vol(value="0.999"), 10_000, GOLD, GOLD) == 9_900
    assert size(vol(value="0.999"), 100, INDEX, INDEX) == 90
    assert floor_to_step(Decimal("199999.99"), 100_000) == 100_000
    assert floor_to_step(0, 100) == 0 and floor_to_step(-5, 100) == 0


def test_min_and_max_lots_clamp_in_follower_lots() -> None:
    assert size(vol(value="0.001", min_lots="0.05"), 10_000_000) == 500_000
    assert size(vol(value="10", max_lots="2"), 10_000_000) == 20_000_000
    assert size(vol(mode="fixed_lots", value="3", max_lots="0.5"), 1, GOLD, GOLD) == 5_000


def test_below_the_symbol_minimum_skips_unless_force_min() -> None:
    skip = size(vol(value="0.5"), 100_000)  # 0.005 lots on a 0.01 minimum
    assert isinstance(skip, Skip) and "below the symbol minimum" in skip.reason
    assert size(vol(value="0.5", force_min=True), 100_000) == FX.min_volume
    odd_min = dataclasses.replace(GOLD, min_volume=150)  # a minimum off the step grid
    assert size(vol(value="0.01", force_min=True), 10_000, GOLD, odd_min) == 150


def test_the_symbol_maximum_caps_on_the_step_grid() -> None:
    capped = dataclasses.replace(FX, max_volume=25_050_000)
    assert size(vol(value="100"), 10_000_000, FX, capped) == 25_000_000
    assert volume_cap(vol(), capped) == 25_000_000
    assert volume_cap(vol(max_lots="1"), capped) == 10_000_000
    assert volume_cap(vol(), dataclasses.replace(FX, max_volume=0)) is None  # none sent


def test_nothing_to_size_is_a_skip() -> None:
    assert isinstance(size(vol(), 0), Skip)
    assert isinstance(size(vol(), -100_000), Skip)


def test_scale_volume_follows_the_master_proportionally() -> None:
    # master 1.00 -> 0.40 lots: the copy sized 0.50 follows to 0.20
    assert scale_volume(5_000_000, 10_000_000, 4_000_000, FX) == 2_000_000
    # netted master grows 1.00 -> 1.50: the copy 0.50 -> 0.75
    assert scale_volume(5_000_000, 10_000_000, 15_000_000, FX) == 7_500_000
    # proportions in exact integers: 0.03 x 1/3 = 0.01
    assert scale_volume(300_000, 3_000_000, 1_000_000, FX) == 100_000
    # 0.05 x 0.3 = 0.015 -> 0.01 (down to the step)
    assert scale_volume(500_000, 10_000_000, 3_000_000, FX) == 100_000
    # below the minimum: 0 (the remainder is closed)
    assert scale_volume(500_000, 10_000_000, 1_000_000, FX) == 0
    assert scale_volume(500_000, 10_000_000, 0, FX) == 0
    # unchanged master: the basis as is, even off the step grid (force_min on an odd minimum)
    assert scale_volume(150, 10_000, 10_000, GOLD) == 150
    assert scale_volume(0, 10_000, 10_000, GOLD) == 0
    assert scale_volume(100, 0, 10_000, GOLD) == 0

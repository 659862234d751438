"""The demo's verdict: its own reading of the demo's rules, checked on hand-computed cases."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path
from typing import Any

from cmamd.demo import verdict
from cmamd.demo.verdict import Expected, MasterTrade, compare, expected_copy
from cmamd.sim.config import SymbolConfig
from cmamd.sim.snapshots import Position, Side

LOT = 10_000_000  # cents of a unit in one lot of EURUSD
STEP = 100_000  # 0.01 lot


def eurusd(name: str = "EURUSD", symbol_id: int = 1) -> SymbolConfig:
    return SymbolConfig(
        symbol_id=symbol_id,
        name=name,
        base_asset="EUR",
        quote_asset="USD",
        digits=5,
        pip_position=4,
        lot_size=LOT,
        min_volume=STEP,
        step_volume=STEP,
        max_volume=1000 * LOT,
        bid=1.08,
        ask=1.0801,
    )


def position(volume: int, side: Side = Side.BUY) -> Position:
    return Position(
        position_id=7,
        symbol_id=1,
        side=side,
        volume=volume,
        entry_price=1.0801,
        stop_loss=1.0751,
        take_profit=1.0901,
        label="",
        comment="",
        open_ms=0,
        updated_ms=0,
    )


def trade(opened: int, follower_equity: str = "100000") -> MasterTrade:
    return MasterTrade(
        position=position(opened),
        symbol="EURUSD",
        opened_volume=opened,
        master_equity=Decimal("100000"),
        follower_equity={"f": Decimal(follower_equity)},
    )


MASTER = {"EURUSD": eurusd()}
FOLLOWER = {"EURUSD": eurusd(), "EURUSD.m": eurusd("EURUSD.m", 2)}


def expect(rule: dict[str, Any], opened: int, now: int, equity: str = "100000") -> Expected | str:
    return expected_copy("f", rule, trade(opened, equity), position(now), MASTER, FOLLOWER)


def test_multiplier_doubles_the_lots_and_keeps_side_and_protection() -> None:
    rule = {"volume": {"mode": "multiplier", "value": 2}}
    assert expect(rule, LOT, LOT) == Expected("EURUSD", Side.BUY, 2 * LOT, 1.0751, 1.0901)


def test_equity_ratio_with_suffix_rounds_down_to_the_step() -> None:
    rule = {"volume": {"mode": "equity_ratio", "value": 1}, "symbols": {"add_suffix": ".m"}}
    # 1 lot x 33333/100000 = 0.33333 lots -> 0.33 lots
    expected = expect(rule, LOT, LOT, equity="33333")
    assert isinstance(expected, Expected)
    assert (expected.symbol, expected.volume) == ("EURUSD.m", 33 * STEP)


def test_partial_close_keeps_the_proportion_rounded_down() -> None:
    rule = {"volume": {"mode": "equity_ratio", "value": 1}}
    # opened at 0.33 lots; the master keeps 60%: 0.198 lots -> 0.19 lots
    expected = expect(rule, LOT, 6 * LOT // 10, equity="33333")
    assert isinstance(expected, Expected) and expected.volume == 19 * STEP


def test_reverse_flips_the_side_and_swaps_stop_loss_and_take_profit() -> None:
    rule = {"volume": {"mode": "multiplier", "value": 1}, "reverse": True}
    assert expect(rule, LOT, LOT) == Expected("EURUSD", Side.SELL, LOT, 1.0901, 1.0751)


def test_no_copy_for_a_missing_symbol_or_below_the_minimum() -> None:
    missing = expect(
        {"volume": {"mode": "multiplier", "value": 1}, "symbols": {"add_suffix": ".x"}}, LOT, LOT
    )
    assert missing == "the follower's broker has no EURUSD.x"
    tiny = expect({"volume": {"mode": "multiplier", "value": "0.005"}}, LOT, LOT)
    assert isinstance(tiny, str) and "below the minimum" in tiny


def test_compare_names_each_difference() -> None:
    want = Expected("EURUSD", Side.BUY, 2 * LOT, 1.0751, 1.0901)
    assert compare(want, [position(2 * LOT)], {1: "EURUSD"}) == []
    assert compare(want, [position(LOT, Side.SELL)], {1: "EURUSD"}) == [
        "side sell != buy",
        f"volume {LOT} != {2 * LOT}",
    ]
    assert compare(want, [], {1: "EURUSD"}) == ["expected one copy, found 0"]


def test_the_verdict_imports_nothing_of_the_copier() -> None:
    source = Path(verdict.__file__).read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    from_cmamd = {name for name in imported if name.split(".")[0] == "cmamd"}
    assert from_cmamd and all(name.startswith("cmamd.sim.") for name in from_cmamd), from_cmamd

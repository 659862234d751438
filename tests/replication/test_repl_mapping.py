from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cmamd.accounts.model import SymbolSpec
from cmamd.config.rules import SymbolRule
from cmamd.replication.intents import Skip
from cmamd.replication.mapping import follower_name, map_symbol, symbol_selected

from .repl_kit import EURUSD, XAUUSD


def spec(name: str, symbol_id: int = 50, **kw: Any) -> SymbolSpec:
    return dataclasses.replace(EURUSD, symbol_id=symbol_id, name=name, **kw)


FOLLOWER = {
    s.name: s
    for s in [
        spec("EURUSD"),
        spec("EURUSD.m", 51),
        spec("fxGBPUSD", 52),
        spec("GOLD", 53),
        spec("USDJPY.r", 54),
        spec("USDCHF", 55),
        spec("NZDUSD", 56, enabled=False),
        spec("AUDUSD", 57, close_only=True),
    ]
}


def rule(**kw: Any) -> SymbolRule:
    return SymbolRule.model_validate(kw)


def test_explicit_map_comes_first() -> None:
    r = rule(map={"XAUUSD": "GOLD"}, add_suffix=".m")
    assert map_symbol(r, "XAUUSD", FOLLOWER) == FOLLOWER["GOLD"]
    assert map_symbol(r, "EURUSD", FOLLOWER) == FOLLOWER["EURUSD.m"]  # the others get affixes


def test_affixes_are_stripped_when_present_and_added() -> None:
    r = rule(strip_suffix=".r", add_prefix="fx")
    assert follower_name(r, "GBPUSD.r") == "fxGBPUSD"
    assert follower_name(r, "GBPUSD") == "fxGBPUSD"  # nothing to strip: only added
    assert map_symbol(r, "GBPUSD.r", FOLLOWER) == FOLLOWER["fxGBPUSD"]
    r = rule(strip_prefix="fx", add_suffix=".r")
    assert map_symbol(r, "fxUSDJPY", FOLLOWER) == FOLLOWER["USDJPY.r"]


def test_a_name_is_never_stripped_to_nothing() -> None:
    assert follower_name(rule(strip_suffix=".m"), ".m") == ".m"
    assert follower_name(rule(strip_prefix="fx"), "fx") == "fx"


def test_without_a_rule_the_name_is_the_same() -> None:
    assert map_symbol(rule(), "USDCHF", FOLLOWER) == FOLLOWER["USDCHF"]


def test_unmapped_names_are_skipped_never_guessed() -> None:
    r = rule(add_suffix=".m")
    result = map_symbol(r, "EURUSD.M", FOLLOWER)  # no case folding
    assert result == Skip("unmapped symbol EURUSD.M (tried EURUSD.M.m)")
    assert isinstance(map_symbol(rule(), "eurusd", FOLLOWER), Skip)
    assert isinstance(map_symbol(rule(), "EURUSD-x", FOLLOWER), Skip)  # no fuzzy match
    result = map_symbol(rule(), XAUUSD.name, FOLLOWER)
    assert isinstance(result, Skip) and "XAUUSD" in result.reason


def test_include_and_exclude_select_master_names() -> None:
    included = rule(include=["EURUSD", "USDCHF"])
    assert symbol_selected(included, "EURUSD")
    assert not symbol_selected(included, "GBPUSD")
    skip = map_symbol(included, "GBPUSD", FOLLOWER)
    assert isinstance(skip, Skip) and "not selected" in skip.reason
    excluded = rule(exclude=["USDCHF"])
    assert symbol_selected(excluded, "EURUSD")
    assert isinstance(map_symbol(excluded, "USDCHF", FOLLOWER), Skip)
    # the names are the master's: an excluded master name is out whatever it maps to
    mapped = rule(map={"XAUUSD": "GOLD"}, exclude=["GOLD"])
    assert map_symbol(mapped, "XAUUSD", FOLLOWER) == FOLLOWER["GOLD"]


@pytest.mark.parametrize(("name", "why"), [("NZDUSD", "disabled"), ("AUDUSD", "close-only")])
def test_untradable_follower_symbols_skip_opens_only(name: str, why: str) -> None:
    skip = map_symbol(rule(), name, FOLLOWER)
    assert isinstance(skip, Skip) and why in skip.reason
    assert map_symbol(rule(), name, FOLLOWER, opening=False) == FOLLOWER[name]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"include": ["A"], "exclude": ["A"]}, "both included and excluded: A"),
        ({"map": {"A": "B"}, "exclude": ["A"]}, "both mapped and excluded: A"),
        ({"map": {"A": "B"}, "include": ["C"]}, "missing from include: A"),
        ({"include": ["A", "A"]}, "listed twice in include: A"),
        ({"map": {"": "B"}}, "at least 1 character"),
    ],
)
def test_contradictory_symbol_rules_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SymbolRule.model_validate(fields)

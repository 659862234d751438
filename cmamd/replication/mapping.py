"""Master symbol name -> follower symbol, as a destination's ``symbols:`` rule says.

Brokers name the same instrument differently (``EURUSD``, ``EURUSD.r``, ``fxEURUSD``); the
rule bridges that explicitly. A name that does not resolve exactly is never guessed at (no
case folding, no fuzzy matching): copying onto the wrong instrument is worse than not copying.
"""

from __future__ import annotations

from collections.abc import Mapping

from cmamd.accounts.model import SymbolSpec
from cmamd.config.rules import SymbolRule
from cmamd.replication.intents import Skip


def symbol_selected(rule: SymbolRule, master_name: str) -> bool:
    """include/exclude on master names: exclude wins, an empty include selects all."""
    if master_name in rule.exclude:
        return False
    return not rule.include or master_name in rule.include


def follower_name(rule: SymbolRule, master_name: str) -> str:
    """The follower symbol name the rule gives for a master name (not checked to exist)."""
    explicit = rule.map.get(master_name)
    if explicit is not None:
        return explicit
    core = master_name
    # "only if present", and never down to an empty name
    if rule.strip_prefix and core.startswith(rule.strip_prefix) and core != rule.strip_prefix:
        core = core[len(rule.strip_prefix) :]
    if rule.strip_suffix and core.endswith(rule.strip_suffix) and core != rule.strip_suffix:
        core = core[: -len(rule.strip_suffix)]
    return f"{rule.add_prefix}{core}{rule.add_suffix}"


def map_symbol(
    rule: SymbolRule,
    master_name: str,
    follower_symbols: Mapping[str, SymbolSpec],
    *,
    opening: bool = True,
) -> SymbolSpec | Skip:
    """The follower symbol for a master symbol, or why there is none.

    With ``opening`` (the default) a follower symbol that cannot take new trades (disabled
    or close-only at the broker) is a Skip too.
    """
    if not symbol_selected(rule, master_name):
        return Skip(f"symbol {master_name} is not selected by include/exclude")
    name = follower_name(rule, master_name)
    spec = follower_symbols.get(name)
    if spec is None:
        return Skip(f"unmapped symbol {master_name} (tried {name})")
    if opening:
        tradable = symbol_tradable(spec)
        if isinstance(tradable, Skip):
            return tradable
    return spec


def symbol_tradable(spec: SymbolSpec) -> Skip | None:
    """None when the symbol takes new trades; else why not."""
    if not spec.enabled:
        return Skip(f"follower symbol {spec.name} is disabled")
    if spec.close_only:
        return Skip(f"follower symbol {spec.name} is close-only")
    return None

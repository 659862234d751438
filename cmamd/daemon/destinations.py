"""What the daemon's periodic loop needs of each destination, computed once per config.

Every few seconds the daemon checks equity stops and writes its STATUS line. Deriving a
destination's id (two account lookups by name) and its equity-stop fingerprint (a pydantic
dump and a hash; the latch holds it, dest_marks.py) on every tick made that loop
quadratic in accounts; a (re)load computes them once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmamd.config.diff import fingerprint_of
from cmamd.config.models import Config
from cmamd.config.rules import Destination
from cmamd.daemon.dest_marks import equity_stop_key


@dataclass(frozen=True, slots=True)
class DestinationFacts:
    rule: str
    follower: str
    dest: Destination
    dest_id: str
    equity_stop_fingerprint: str  # "" without an equity stop

    @property
    def equity_stop_key(self) -> str:
        return equity_stop_key(self.dest_id)


def destination_facts(config: Config) -> list[DestinationFacts]:
    """Every destination of every rule (enabled or not), in config order: O(accounts + dests)."""
    ids = {account.name: account.account_id for account in config.accounts}
    return [
        DestinationFacts(
            rule=rule.name,
            follower=dest.account,
            dest=dest,
            dest_id=f"{rule.name}:{ids[rule.source]}:{ids[dest.account]}",
            equity_stop_fingerprint=(
                fingerprint_of(dest.equity_stop) if dest.equity_stop is not None else ""
            ),
        )
        for rule in config.copy_rules
        for dest in rule.destinations
    ]


class FactsCache:
    """``facts(config)``: computed on the first call for a config object, then reused."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._facts: list[DestinationFacts] = []

    def facts(self, config: Config) -> list[DestinationFacts]:
        if config is not self._config:
            self._facts = destination_facts(config)
            self._config = config
        return self._facts

"""Every few seconds: trip the equity stops whose follower's equity fell below the
threshold (replication/equity_stop.py decides, state/marks.py keeps the latch)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from cmamd.config.models import Config
from cmamd.logs import get_logger
from cmamd.replication import equity_stop
from cmamd.replication.routes_from_config import FactsCache
from cmamd.state.marks import MarkStore

log = get_logger("cmamd.daemon")

Alert = Callable[[str, str, dict[str, Any]], None]


class HasEquity(Protocol):
    @property
    def equity(self) -> Decimal | None: ...


class EquitySource(Protocol):
    """What the watch reads of an account session."""

    @property
    def ready(self) -> asyncio.Event: ...

    @property
    def state(self) -> HasEquity: ...


class EquityWatch:
    def __init__(self, marks: MarkStore, alert: Alert) -> None:
        self._marks = marks
        self._alert = alert
        self._facts = FactsCache()

    def check(self, config: Config, sessions: Mapping[str, EquitySource]) -> bool:
        """Latch, log and alert every stop that trips now; whether any did (then the
        routes must be rebuilt: a latched destination liquidates)."""
        facts = self._facts.facts(config)
        if not any(fact.equity_stop_fingerprint for fact in facts):
            return False
        equity_of: dict[str, Decimal] = {}
        for name, session in sessions.items():
            equity = session.state.equity if session.ready.is_set() else None
            if equity is not None:
                equity_of[name] = equity
        tripped = equity_stop.trips(facts, equity_of, self._marks.equity_stops())
        for trip in tripped:
            fact = trip.facts
            self._marks.latch_equity_stop(fact.dest_id, fact.equity_stop_fingerprint)
            log.error(
                "equity stop tripped",
                action="closing copies and freezing the destination",
                rule=fact.rule,
                follower=fact.follower,
                equity=str(trip.equity),
                threshold=str(trip.threshold),
            )
            self._alert(
                "equity_stop",
                f"EQUITY STOP on {fact.follower} ({fact.rule}): equity {trip.equity} "
                f"below {trip.threshold}; copies closed, destination frozen",
                {"rule": fact.rule, "follower": fact.follower, "equity": str(trip.equity)},
            )
        return bool(tripped)

    def stopped(self, config: Config) -> list[str]:
        """``rule:follower`` of every destination frozen by its equity stop."""
        return equity_stop.stopped(self._facts.facts(config), self._marks.equity_stops())

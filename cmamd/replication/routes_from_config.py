"""The copy routes a configuration prescribes, pure: config, running accounts and the
destinations' persisted marks in, routes and the marks to persist out.

A destination's identity is ``rule:master id:follower id``: by account ids, so renaming an
account keeps its history, and a rule pointed at another master starts afresh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field

from cmamd.config.diff import fingerprint_of
from cmamd.config.models import Config
from cmamd.config.rules import CopyMode, Destination
from cmamd.replication.equity_stop import latch_held
from cmamd.replication.executor import CopyRoute
from cmamd.replication.planner import CopyTarget
from cmamd.state.marks import DestinationMarks

Override = Callable[[CopyTarget, str], CopyTarget]
"""The operator's run-time overrides (``cmamd ctl``) applied to a target, by destination id."""


def destination_id(rule: str, master_account_id: int, follower_account_id: int) -> str:
    return f"{rule}:{master_account_id}:{follower_account_id}"


def copying_since(
    marks: DestinationMarks, mode: CopyMode, now_ms: int
) -> tuple[int, DestinationMarks]:
    """Since when the destination copies new master trades, and its marks updated: the
    first start, moved to the moment it comes back from ``mode: frozen``, so that what the
    master did meanwhile is "existing" and a frozen follower only picks up the thread of
    the copies it has."""
    started, frozen_since = marks.started_ms, marks.frozen_since_ms
    if mode is CopyMode.FROZEN:
        if frozen_since is None:
            frozen_since = now_ms
    elif frozen_since is not None:
        started, frozen_since = now_ms, None
    if started is None:
        started = now_ms
    return started, dataclasses.replace(marks, started_ms=started, frozen_since_ms=frozen_since)


@dataclass(slots=True)
class Routes:
    routes: list[CopyRoute] = field(default_factory=list)
    marks: dict[str, tuple[DestinationMarks, DestinationMarks]] = field(default_factory=dict)
    """Destination id -> (marks as read, marks to persist), for those that changed."""


def _as_configured(target: CopyTarget, dest_id: str) -> CopyTarget:
    return target


def build_routes(
    config: Config,
    running: Container[str],
    marks: Mapping[str, DestinationMarks],
    now_ms: int,
    override: Override = _as_configured,
) -> Routes:
    """The routes of every enabled rule between enabled accounts that have a session
    (``running``, by name: one never started waits for a reload)."""
    result = Routes()
    for rule in config.copy_rules:
        if not rule.enabled:
            continue
        master = config.account(rule.source)
        for dest in rule.destinations:
            follower = config.account(dest.account)
            if not (master.enabled and follower.enabled):
                continue
            if master.name not in running or follower.name not in running:
                continue
            dest_id = destination_id(rule.name, master.account_id, follower.account_id)
            old = marks.get(dest_id, DestinationMarks())
            latch = latch_held(old.equity_stop, dest)
            new = dataclasses.replace(old, equity_stop=latch) if latch else old
            target = CopyTarget(
                rule=rule.name,
                dest=dest,
                master_account_id=master.account_id,
                follower_account_id=follower.account_id,
                started_ms=0,
                liquidate=bool(latch),
            )
            target = override(target, dest_id)
            # from the effective mode (YAML or ctl): a return from frozen, whoever set it,
            # moves the start
            started, new = copying_since(new, target.dest.mode, now_ms)
            if new != old:
                result.marks[dest_id] = (old, new)
            target = dataclasses.replace(target, started_ms=started)
            result.routes.append(CopyRoute(dest_id, target, master.name, follower.name))
    return result


@dataclass(frozen=True, slots=True)
class DestinationFacts:
    """What the daemon's periodic loop needs of a destination, derived once per config:
    its id (two account lookups) and equity-stop fingerprint (a dump and a hash) every
    few seconds made that loop quadratic in accounts."""

    rule: str
    follower: str
    dest: Destination
    dest_id: str
    equity_stop_fingerprint: str  # "" without an equity stop


def destination_facts(config: Config) -> list[DestinationFacts]:
    """Every destination of every rule (enabled or not), in config order: O(accounts + dests)."""
    ids = {account.name: account.account_id for account in config.accounts}
    return [
        DestinationFacts(
            rule=rule.name,
            follower=dest.account,
            dest=dest,
            dest_id=destination_id(rule.name, ids[rule.source], ids[dest.account]),
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

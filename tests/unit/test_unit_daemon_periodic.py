"""The daemon's periodic work without sockets: equity stops tripped once and latched,
housekeeping at its interval with a cutoff from the wall clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cmamd.config.loader import load_config
from cmamd.config.models import Config
from cmamd.daemon.equity_watch import EquityWatch
from cmamd.daemon.housekeeping import Housekeeping
from cmamd.daemon.timing import DaemonTiming
from cmamd.state.marks import MarkStore
from cmamd.state.store import StateStore

CONFIG = """
api: {client_id: app, client_secret: s, demo_host: 127.0.0.1, port: 5035, tls: false}
state_dir: STATE
accounts:
  - {name: m, account_id: 11, live: false}
  - {name: f1, account_id: 21, live: false}
  - {name: f2, account_id: 22, live: false}
copy:
  - name: r
    source: m
    destinations:
      - {account: f1, equity_stop: {below: 100}}
      - {account: f2}
"""


@dataclass
class Equity:
    equity: Decimal | None


@dataclass
class Session:
    state: Equity
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def with_equity(cls, equity: str | None, *, ready: bool = True) -> Session:
        session = cls(Equity(None if equity is None else Decimal(equity)))
        if ready:
            session.ready.set()
        return session


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.replace("STATE", str(tmp_path / "state")))
    return load_config(path, environ={})


@pytest.fixture
def marks(tmp_path: Path) -> Iterator[MarkStore]:
    with StateStore.open(tmp_path / "store") as store:
        yield MarkStore(store)


def test_an_equity_stop_trips_once_and_stays_latched(config: Config, marks: MarkStore) -> None:
    alerts: list[tuple[str, str, dict[str, Any]]] = []
    watch = EquityWatch(marks, lambda *alert: alerts.append(alert))
    healthy = {"f1": Session.with_equity("150"), "f2": Session.with_equity("1")}
    assert not watch.check(config, healthy)
    assert not watch.check(config, {"f1": Session.with_equity("50", ready=False)})
    assert not watch.check(config, {"f1": Session.with_equity(None)})
    assert watch.stopped(config) == [] and alerts == []

    assert watch.check(config, {"f1": Session.with_equity("99.99")})
    assert watch.stopped(config) == ["r:f1"]
    ((cause, text, details),) = alerts
    assert cause == "equity_stop" and "99.99" in text
    assert details == {"rule": "r", "follower": "f1", "equity": "99.99"}
    assert not watch.check(config, {"f1": Session.with_equity("10")}), "latched: once"
    assert not watch.check(config, healthy)
    assert watch.stopped(config) == ["r:f1"], "recovered equity does not re-arm it"
    assert len(alerts) == 1


def test_housekeeping_prunes_at_its_interval_from_the_wall_clock() -> None:
    cutoffs: list[tuple[str, int]] = []
    now = {"wall": 100 * 86400.0, "mono": 0.0}

    def prune(what: str) -> Callable[[int], int]:
        def pruned(cutoff_ms: int) -> int:
            cutoffs.append((what, cutoff_ms))
            return 0

        return pruned

    timing = DaemonTiming(housekeeping_interval_s=60, history_days=30)
    housekeeping = Housekeeping(
        prune("links"), prune("journal"), timing, lambda: now["wall"], lambda: now["mono"]
    )
    housekeeping.run_if_due()
    assert cutoffs == [("links", 70 * 86400_000), ("journal", 70 * 86400_000)]
    now["mono"] = 59.0
    housekeeping.run_if_due()
    assert len(cutoffs) == 2, "not before its interval"
    now["mono"], now["wall"] = 60.0, 101 * 86400.0
    housekeeping.run_if_due()
    assert cutoffs[2:] == [("links", 71 * 86400_000), ("journal", 71 * 86400_000)]

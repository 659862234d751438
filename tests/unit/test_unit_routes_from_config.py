"""Routes from a config, and the equity-stop policy: pure, no store, no sockets."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from cmamd.config.diff import fingerprint_of
from cmamd.config.loader import load_config
from cmamd.config.models import Config
from cmamd.config.rules import CopyMode
from cmamd.replication import equity_stop
from cmamd.replication.planner import CopyTarget
from cmamd.replication.routes_from_config import build_routes, destination_facts
from cmamd.state.marks import DestinationMarks

CONFIG = """
api: {client_id: app, client_secret: s, demo_host: 127.0.0.1, port: 5035, tls: false}
state_dir: STATE
accounts:
  - {name: m, account_id: 11, live: false}
  - {name: f1, account_id: 21, live: false}
  - {name: f2, account_id: 22, live: false}
  - {name: gone, account_id: 23, live: false, enabled: false}
copy:
  - name: r
    source: m
    destinations:
      - {account: f1, equity_stop: {below: 100}}
      - {account: f2, mode: frozen}
      - {account: gone}
  - name: idle
    source: f2
    enabled: false
    destinations:
      - {account: f1}
"""
NOW = 50_000
ALL = {"m", "f1", "f2", "gone"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.replace("STATE", str(tmp_path / "state")))
    return load_config(path, environ={})


def stop_latch(config: Config) -> str:
    stop = config.copy_rules[0].destinations[0].equity_stop
    assert stop is not None
    return fingerprint_of(stop)


def test_routes_of_enabled_rules_between_enabled_running_accounts(config: Config) -> None:
    built = build_routes(config, ALL, {}, NOW)
    assert [(r.id, r.master, r.follower) for r in built.routes] == [
        ("r:11:21", "m", "f1"),
        ("r:11:22", "m", "f2"),
    ]
    first = built.routes[0].target
    assert (first.rule, first.master_account_id, first.follower_account_id) == ("r", 11, 21)
    assert first.started_ms == NOW and not first.liquidate
    # first starts are persisted; the frozen one records since when
    assert built.marks == {
        "r:11:21": (DestinationMarks(), DestinationMarks(started_ms=NOW)),
        "r:11:22": (DestinationMarks(), DestinationMarks(started_ms=NOW, frozen_since_ms=NOW)),
    }
    assert [r.id for r in build_routes(config, {"m", "f2"}, {}, NOW).routes] == ["r:11:22"]


def test_known_marks_give_the_start_and_nothing_to_write(config: Config) -> None:
    marks = {
        "r:11:21": DestinationMarks(started_ms=7_000),
        "r:11:22": DestinationMarks(started_ms=8_000, frozen_since_ms=9_000),
    }
    built = build_routes(config, ALL, marks, NOW)
    assert [r.target.started_ms for r in built.routes] == [7_000, 8_000]
    assert built.marks == {}


def test_the_operators_override_decides_the_mode_that_moves_the_start(config: Config) -> None:
    def unfreeze(target: CopyTarget, dest_id: str) -> CopyTarget:
        return dataclasses.replace(target, dest=target.dest.model_copy(update={"mode": "on"}))

    marks = {"r:11:22": DestinationMarks(started_ms=8_000, frozen_since_ms=9_000)}
    built = build_routes(config, ALL, marks, NOW, unfreeze)
    assert built.routes[1].target.started_ms == NOW  # back from frozen, by `cmamd ctl`
    assert built.marks["r:11:22"][1] == DestinationMarks(started_ms=NOW)


def test_a_latched_equity_stop_liquidates_and_a_legacy_latch_is_rewritten(
    config: Config,
) -> None:
    latch = stop_latch(config)
    marks = {"r:11:21": DestinationMarks(started_ms=7_000, equity_stop=latch)}
    built = build_routes(config, ALL, marks, NOW)
    assert built.routes[0].target.liquidate and "r:11:21" not in built.marks
    legacy = fingerprint_of(config.copy_rules[0].destinations[0])
    marks = {"r:11:21": DestinationMarks(started_ms=7_000, equity_stop=legacy)}
    built = build_routes(config, ALL, marks, NOW)
    assert built.routes[0].target.liquidate
    assert built.marks["r:11:21"][1].equity_stop == latch
    marks = {"r:11:21": DestinationMarks(started_ms=7_000, equity_stop="re-armed since")}
    assert not build_routes(config, ALL, marks, NOW).routes[0].target.liquidate


def test_a_stop_trips_once_below_its_threshold(config: Config) -> None:
    facts = destination_facts(config)
    latch = stop_latch(config)
    assert equity_stop.trips(facts, {"f1": Decimal(100), "f2": Decimal(1)}, {}) == []
    assert equity_stop.trips(facts, {}, {}) == [], "equity unknown: never trips"
    (trip,) = equity_stop.trips(facts, {"f1": Decimal("99.5")}, {})
    assert (trip.facts.dest_id, trip.equity, trip.threshold) == (
        "r:11:21",
        Decimal("99.5"),
        Decimal(100),
    )
    assert equity_stop.trips(facts, {"f1": Decimal(1)}, {"r:11:21": latch}) == []
    legacy = fingerprint_of(config.copy_rules[0].destinations[0])
    assert equity_stop.trips(facts, {"f1": Decimal(1)}, {"r:11:21": legacy}) == []
    assert len(equity_stop.trips(facts, {"f1": Decimal(1)}, {"r:11:21": "old block"})) == 1


def test_the_stopped_destinations_are_named_rule_and_follower(config: Config) -> None:
    facts = destination_facts(config)
    assert equity_stop.stopped(facts, {}) == []
    assert equity_stop.stopped(facts, {"r:11:21": stop_latch(config)}) == ["r:f1"]
    assert equity_stop.stopped(facts, {"r:11:21": "old block"}) == []


def test_the_copy_mode_of_a_route_is_its_destinations(config: Config) -> None:
    modes = [r.target.dest.mode for r in build_routes(config, ALL, {}, NOW).routes]
    assert modes == [CopyMode.ON, CopyMode.FROZEN]

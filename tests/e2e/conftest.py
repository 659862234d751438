from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cmamd.daemon.timing import DaemonTiming
from cmamd.demo.master import MasterTrader
from cmamd.replication.tuning import ReplicationTuning
from cmamd.sim import SimConfig, SimServer

from .kit import InProcessDaemon, WorldClock, connect_master, daemon_config, write_yaml


@pytest.fixture
def world_clock() -> WorldClock:
    """The wall clock of the simulator and of the daemons the ``daemons`` fixture makes."""
    return WorldClock()


@pytest.fixture
async def sim(world_clock: WorldClock) -> AsyncIterator[SimServer]:
    async with SimServer(SimConfig.default(), clock=world_clock) as server:
        yield server


@pytest.fixture
def ids(sim: SimServer) -> dict[str, int]:
    return {a["name"]: a["account_id"] for a in sim.describe()["accounts"]}


@pytest.fixture
def make_config(sim: SimServer, tmp_path: Path) -> Callable[..., Path]:
    """Write a daemon config for ``accounts`` and copy ``rules``; returns its path."""

    def make(
        accounts: list[str], rules: list[dict[str, Any]], name: str = "config.yaml", **kw: Any
    ) -> Path:
        data = daemon_config(
            sim, tmp_path / "state", tmp_path / "client_secret", accounts, rules, **kw
        )
        return write_yaml(tmp_path / name, data)

    return make


@pytest.fixture
async def daemons(world_clock: WorldClock) -> AsyncIterator[Callable[..., InProcessDaemon]]:
    """Factory of in-process daemons, all stopped at teardown."""
    started: list[InProcessDaemon] = []

    def make(
        config: Path,
        environ: dict[str, str] | None = None,
        timing: DaemonTiming | None = None,
        tuning: ReplicationTuning | None = None,
    ) -> InProcessDaemon:
        daemon = InProcessDaemon(
            config,
            environ or {},
            world_clock,
            timing or DaemonTiming(),
            tuning or ReplicationTuning(),
        )
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        await daemon.stop()


@pytest.fixture
async def master(sim: SimServer) -> AsyncIterator[MasterTrader]:
    trader = await connect_master(sim)
    yield trader
    await trader.close_connection()


@pytest.fixture
async def netted_master(sim: SimServer) -> AsyncIterator[MasterTrader]:
    trader = await connect_master(sim, "master-netted")
    yield trader
    await trader.close_connection()

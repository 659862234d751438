"""The world a benchmark runs in: a simulated broker with 1 master and N followers, the
daemon's config for it, the daemon in-process, and the master trading from its own client.

Adapted from tests/e2e/kit.py (not imported: bench/ must not depend on the test suite).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cmamd.daemon.launch import open_daemon
from cmamd.daemon.notify import SystemdNotifier
from cmamd.daemon.supervisor import Daemon
from cmamd.demo.config import sim_daemon_config
from cmamd.demo.master import MasterTrader
from cmamd.replication.executor import CopyReport
from cmamd.sim import SimConfig, SimServer
from cmamd.sim.defaults import default_config_data

BROKER = "Demo Markets"
MASTER = "master"
MASTER_ID = 4_100_000
FOLLOWER_ID_BASE = 4_200_000


def follower_name(index: int) -> str:
    return f"follower-{index:03d}"


def sim_config(followers: int, **overrides: Any) -> SimConfig:
    """The demo broker's assets and symbols; one cTID owning the master, another (a money
    manager) owning ``followers`` hedged accounts, all on one broker."""
    data = default_config_data()
    broker = next(b for b in data["brokers"] if b["name"] == BROKER)

    def account(name: str, account_id: int, balance: int) -> dict[str, Any]:
        return {
            "name": name,
            "account_id": account_id,
            "trader_login": account_id + 1_000_000,
            "broker": BROKER,
            "kind": "hedged",
            "balance": balance,
        }

    return SimConfig.model_validate(
        {
            "assets": data["assets"],
            "brokers": [broker],
            "ctids": [
                {"name": "masters", "accounts": [account(MASTER, MASTER_ID, 1_000_000)]},
                {
                    "name": "followers",
                    "accounts": [
                        account(follower_name(i), FOLLOWER_ID_BASE + i, 1_000_000)
                        for i in range(1, followers + 1)
                    ],
                },
            ],
            # bench runs are long enough for the default 25 connections to matter only for
            # the multi-connection variant; keep the limits the real API has otherwise
            **overrides,
        }
    )


def copy_rules(followers: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "bench",
            "source": MASTER,
            "destinations": [
                {"account": follower_name(i), "volume": {"mode": "multiplier", "value": 1}}
                for i in range(1, followers + 1)
            ],
        }
    ]


def daemon_config(
    described: dict[str, Any],
    port: int,
    state_dir: Path,
    secret_file: Path,
    followers: int,
    *,
    connections: int = 1,
    log_level: str = "info",
) -> dict[str, Any]:
    """The daemon's YAML as a dict: production defaults except the endpoint (loopback, no
    TLS) and, when asked, the number of connections."""
    assert described["url"].endswith(f":{port}")
    names = [MASTER, *(follower_name(i) for i in range(1, followers + 1))]
    return sim_daemon_config(
        described,
        state_dir,
        secret_file,
        names,
        copy_rules(followers),
        api={"connections": {"demo": connections}},
        logging={"level": log_level, "format": "json"},
        shutdown_timeout_s=10,
    )


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class BenchDaemon:
    """The daemon on the benchmark's own event loop, reporting every copy outcome."""

    config: Path
    reports: list[tuple[float, CopyReport]] = field(default_factory=list)
    daemon: Daemon | None = None
    task: asyncio.Task[int] | None = None
    on_report: Callable[[CopyReport], None] | None = None
    keep_reports: bool = True  # False: only count (the memory scenario measures the daemon)
    counts: dict[str, int] = field(default_factory=dict)

    def _report(self, report: CopyReport) -> None:
        self.counts[report.outcome] = self.counts.get(report.outcome, 0) + 1
        if self.keep_reports:
            self.reports.append((time.monotonic(), report))
        if self.on_report is not None:
            self.on_report(report)

    async def start(self, timeout: float = 120.0) -> Daemon:
        self.daemon = open_daemon(
            self.config, environ={}, notifier=SystemdNotifier(env={}), on_report=self._report
        )
        self.task = asyncio.create_task(self.daemon.run())
        started = asyncio.create_task(self.daemon.started.wait())
        done, _ = await asyncio.wait(
            {started, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if self.task in done:
            raise RuntimeError(f"daemon exited during start-up: {self.task.result()}")
        if started not in done:
            started.cancel()
            raise RuntimeError("daemon not started in time")
        not_ready = [n for n, s in self.daemon.sessions.items() if not s.ready.is_set()]
        if not_ready:
            raise RuntimeError(f"accounts not ready after start-up: {not_ready[:5]}")
        return self.daemon

    @property
    def reported(self) -> int:
        return sum(self.counts.values())

    async def wait_reports(self, count: int, timeout: float) -> None:
        """Until ``count`` copies were reported (any outcome)."""
        deadline = time.monotonic() + timeout
        while self.reported < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.reported}/{count} copies reported in {timeout} s")
            await asyncio.sleep(0.005)

    async def stop(self) -> int:
        if self.daemon is None or self.task is None:
            return 0
        if not self.task.done():
            self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 60)


async def connect_master(url: str, described: dict[str, Any]) -> MasterTrader:
    account = next(a for a in described["accounts"] if a["name"] == MASTER)
    return await MasterTrader.connect(
        url,
        described["client_id"],
        described["client_secret"],
        account["account_id"],
        account["access_token"],
    )


async def start_sim(followers: int, **overrides: Any) -> SimServer:
    sim = SimServer(sim_config(followers, **overrides))
    await sim.start()
    return sim

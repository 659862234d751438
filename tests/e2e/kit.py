"""End-to-end harness: the simulator, the daemon (in-process or as a real process), a
notify socket standing in for systemd's, and the master trading from its own client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from polling import first_value, reached, wait_until

from cmamd.daemon.launch import open_daemon
from cmamd.daemon.notify import SystemdNotifier
from cmamd.daemon.supervisor import Daemon
from cmamd.daemon.timing import DaemonTiming
from cmamd.demo.config import sim_daemon_config
from cmamd.demo.master import MasterTrader
from cmamd.protocol.proto import messages_pb2
from cmamd.replication.tuning import ReplicationTuning
from cmamd.sim import SimServer
from cmamd.sim.snapshots import Position

ROOT = Path(__file__).resolve().parents[2]


def daemon_config(
    sim: SimServer,
    state_dir: Path,
    secret_file: Path,
    accounts: Iterable[str],
    rules: list[dict[str, Any]],
    *,
    bootstrap_tokens: bool = True,
    api: dict[str, Any] | None = None,
    logging: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Short request timeout and shutdown budget, so fault tests run fast."""
    return sim_daemon_config(
        sim.describe(),
        state_dir,
        secret_file,
        accounts,
        rules,
        bootstrap_tokens=bootstrap_tokens,
        api={"request_timeout_s": 2, **(api or {})},
        logging=logging,
        shutdown_timeout_s=5,
    )


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    async def wait_for(self, predicate: Callable[[str], bool], timeout: float = 15.0) -> str:
        seen = 0

        def match() -> str | None:
            nonlocal seen
            self.drain()
            found = next((m for m in self.messages[seen:] if predicate(m)), None)
            seen = len(self.messages)
            return found

        message = await first_value(match, timeout, 0.02)
        if message is None:
            raise AssertionError(f"no matching notification; got {self.messages}")
        return message

    def close(self) -> None:
        self.sock.close()


@dataclass
class DaemonProcess:
    """``cmamd run`` as a real process, as systemd runs it."""

    config: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cmamd", "run", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)},
            cwd=str(self.config.parent),
        )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        proc = self.proc
        if not await reached(lambda: proc.poll() is not None, timeout, 0.05):
            proc.kill()
            raise AssertionError("daemon did not exit in time")
        self.log.close()
        return self.proc.returncode

    async def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, as systemd stops the service; the exit code once it exited."""
        self.signal(signal.SIGTERM)
        return await self.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                events.append(json.loads(line))
        return events


FAST_LOOP = DaemonTiming(status_interval_s=0.05, pnl_interval_s=0.05)
"""Equity and equity stops looked at every 50 ms instead of every few seconds."""


class WorldClock:
    """Wall time a test moves forward: the simulator and the daemon both read it, so a
    master trade is made older than a delay without waiting for the delay to pass."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


@dataclass
class InProcessDaemon:
    """The daemon on the test's own event loop: fast, and its objects can be inspected."""

    config: Path
    environ: dict[str, str] = field(default_factory=dict)
    wall_clock: Callable[[], float] = time.time
    timing: DaemonTiming = field(default_factory=DaemonTiming)
    tuning: ReplicationTuning = field(default_factory=ReplicationTuning)
    daemon: Daemon | None = None
    task: asyncio.Task[int] | None = None

    async def start(self, timeout: float = 20.0) -> Daemon:
        self.daemon = open_daemon(
            self.config,
            environ=self.environ,
            notifier=SystemdNotifier(env=self.environ),
            wall_clock=self.wall_clock,
            timing=self.timing,
            tuning=self.tuning,
        )
        self.task = asyncio.create_task(self.daemon.run())
        started = asyncio.create_task(self.daemon.started.wait())
        done, _ = await asyncio.wait(
            {started, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if self.task in done:
            raise AssertionError(f"daemon exited during start-up: {self.task.result()}")
        assert started in done, "daemon not started in time"
        return self.daemon

    async def settle(self, quiet_s: float = 0.2, timeout: float = 15.0) -> None:
        """Until the replication queue stayed idle for ``quiet_s``."""
        assert self.daemon is not None and self.daemon.replicator is not None
        if not await self.daemon.replicator.queue.wait_quiet(quiet_s, timeout):
            raise AssertionError("replication did not settle")

    async def stop(self) -> int:
        if self.daemon is None or self.task is None:
            return 0
        if not self.task.done():
            self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 30)


async def eventually(check: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    await wait_until(check, timeout, 0.02, what=what)


def positions_by_label(sim: SimServer, account_id: int) -> dict[str, list[Position]]:
    result: dict[str, list[Position]] = {}
    for position in sim.broker.positions(account_id):
        result.setdefault(position.label, []).append(position)
    return result


MakeConfig = Callable[..., Path]
Daemons = Callable[..., InProcessDaemon]


async def started(daemons: Daemons, config: Path) -> InProcessDaemon:
    daemon = daemons(config)
    await daemon.start()
    return daemon


async def connect_master(sim: SimServer, name: str = "master") -> MasterTrader:
    described = sim.describe()
    account = next(a for a in described["accounts"] if a["name"] == name)
    return await MasterTrader.connect(
        sim.url,
        described["client_id"],
        described["client_secret"],
        account["account_id"],
        account["access_token"],
    )


def new_order_requests(sim: SimServer, account_id: int, since: int = 0) -> list[Any]:
    """The new-order requests the simulator received for ``account_id`` (from record ``since``)."""
    return [
        r
        for r in sim.record[since:]
        if isinstance(r.message, messages_pb2.ProtoOANewOrderReq)
        and r.message.ctidTraderAccountId == account_id
    ]

"""The simulator and the daemon as processes of their own, as they run in production.

``SimProcess`` is ``bench.simproc`` (optionally recording frames at its socket);
``DaemonProcess`` is ``python -m cmamd run`` with a notify socket standing in for
systemd's, so that "started" means READY=1, and /proc gives its CPU time and RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from bench import world

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> float:
    """utime + stime of the process's main thread (the daemon's event loop) so far."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _daemon_module() -> list[str]:
    """``CMAMD_BENCH_PROFILE=DIR``: run each daemon under cProfile (bench/profiled.py), one
    stats file per run in DIR; the figures are inflated but the shares hold."""
    where = os.environ.get("CMAMD_BENCH_PROFILE")
    if not where:
        return ["cmamd"]
    Path(where).mkdir(parents=True, exist_ok=True)
    return ["bench.profiled", f"{where}/daemon-{time.monotonic_ns()}.prof"]


class SimProcess:
    def __init__(self, proc: asyncio.subprocess.Process, described: dict[str, Any]) -> None:
        self.proc = proc
        self.described = described

    @classmethod
    async def start(
        cls, followers: int, tmp: Path, frames: Path | None = None, max_rps: int | None = None
    ) -> SimProcess:
        describe = tmp / "sim.json"
        args = ["--followers", str(followers), "--describe", str(describe)]
        if frames is not None:
            args += ["--frames", str(frames)]
        if max_rps is not None:
            args += ["--max-rps", str(max_rps)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.simproc",
            *args,
            cwd=str(REPO),
            env=_env(),
            stdout=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not describe.exists():
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("simulator process did not start")
            await asyncio.sleep(0.05)
        return cls(proc, json.loads(describe.read_text()))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 60)


class DaemonProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self._notify_path = config.with_name(f"notify-{os.getpid()}-{time.monotonic_ns()}.sock")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self._notify_path))
        self._notify.setblocking(False)
        self.notifications: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 120.0) -> float:
        """Start and wait for READY=1; returns the seconds it took."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *_daemon_module(),
                "run",
                "--config",
                str(self.config),
                cwd=str(self.config.parent),
                env={**_env(), "NOTIFY_SOCKET": str(self._notify_path)},
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        while "READY=1" not in self._drain():
            if self.proc.returncode is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"daemon not ready within {timeout} s; see {self.log}")
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    def _drain(self) -> str:
        while True:
            try:
                self.notifications.append(self._notify.recv(65536).decode())
            except BlockingIOError:
                return "\n".join(self.notifications)

    def last_status(self) -> str:
        self._drain()
        for message in reversed(self.notifications):
            for line in message.splitlines():
                if line.startswith("STATUS="):
                    return line.removeprefix("STATUS=")
        return ""

    async def stop(self) -> int:
        try:
            if self.proc is None:
                return 0
            if self.proc.returncode is None:
                self.proc.send_signal(signal.SIGTERM)
            return await asyncio.wait_for(self.proc.wait(), 60)
        finally:
            self._notify.close()
            self._notify_path.unlink(missing_ok=True)


def daemon_for(sim: SimProcess, tmp: Path, followers: int, connections: int) -> DaemonProcess:
    """A daemon process (not started yet) copying ``sim``'s master onto ``followers``
    followers over ``connections`` connections, with its config and state under ``tmp``."""
    described = sim.described
    config = world.write_config(
        tmp / "config.yaml",
        world.daemon_config(
            described,
            described["port"],
            tmp / "state",
            tmp / "client_secret",
            followers,
            connections=connections,
        ),
    )
    return DaemonProcess(config, tmp / "daemon.log")

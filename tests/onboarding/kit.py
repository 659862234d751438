"""Onboarding tests: the simulator's OAuth pages, a config pointed at them, `cmamd` as a
real process (stdin for the paste path), and the browser's part played over HTTP."""

from __future__ import annotations

import asyncio
import http.client
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cmamd.sim import SimServer

ROOT = Path(__file__).resolve().parents[2]


def onboarding_config(
    sim: SimServer,
    tmp_path: Path,
    redirect_uri: str,
    accounts: list[dict[str, Any]] | None = None,
    **api: Any,
) -> Path:
    """A config for the simulator with no token anywhere in it."""
    described = sim.describe()
    secret = tmp_path / "client_secret"
    secret.write_text(described["client_secret"])
    secret.chmod(0o600)
    url = urlsplit(described["url"])
    data: dict[str, Any] = {
        "api": {
            "client_id": described["client_id"],
            "client_secret_file": str(secret),
            "redirect_uri": redirect_uri,
            "auth_url": described["auth_url"],
            "token_url": described["token_url"],
            "demo_host": url.hostname,
            "port": url.port,
            "tls": False,
            "request_timeout_s": 3,
            **api,
        },
        "state_dir": str(tmp_path / "state"),
        "logging": {"level": "info", "format": "json"},
    }
    if accounts is not None:
        data["accounts"] = accounts
        data["copy"] = []
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class CmamdProcess:
    """`cmamd ARGS` as a real process with piped stdin/stdout/stderr."""

    proc: asyncio.subprocess.Process
    out_lines: list[str] = field(default_factory=list)

    @classmethod
    async def start(cls, *args: str) -> CmamdProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cmamd",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        return cls(proc)

    async def auth_url(self, timeout: float = 20.0) -> str:
        """The authorisation URL the command prints."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"no URL printed; stderr: {err.decode()}")
                line = raw.decode()
                self.out_lines.append(line)
                if line.strip().startswith("http"):
                    return line.strip()

    def paste(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def finish(self, timeout: float = 30.0) -> Run:
        async with asyncio.timeout(timeout):
            out, err = await self.proc.communicate()
        return Run(self.proc.returncode or 0, "".join(self.out_lines) + out.decode(), err.decode())


async def run_cmamd(*args: str, stdin: str = "", timeout: float = 60.0) -> Run:
    process = await CmamdProcess.start(*args)
    assert process.proc.stdin is not None
    process.proc.stdin.write(stdin.encode())
    process.close_stdin()
    return await process.finish(timeout)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


async def browser_grant(auth_url: str) -> str:
    """The user granting on the authorisation page: returns where it redirects to."""
    status, headers, body = await asyncio.to_thread(_get, auth_url)
    if status != 302:
        raise AssertionError(f"grant page answered {status}: {body.decode(errors='replace')}")
    return headers["Location"]


async def browser_follow(location: str) -> tuple[int, bytes]:
    """The browser loading the redirect URI (the local listener)."""
    status, _, body = await asyncio.to_thread(_get, location)
    return status, body

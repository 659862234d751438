"""Helpers for the ``cmamd ctl`` end-to-end tests: a config with a control socket, and
``ctl`` run through the real parser, client and rendering."""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmamd.cli import build_parser
from cmamd.control import command
from cmamd.replication.labels import parse_label
from cmamd.sim import SimServer

from .kit import Daemons as Daemons
from .kit import MakeConfig as MakeConfig
from .kit import started as started


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # a unix socket path is at most 107 bytes: pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="cmamd-", dir="/tmp") as name:
        yield Path(name)


def operated(
    make_config: MakeConfig,
    socket_dir: Path,
    accounts: list[str],
    rules: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    **kw: Any,
) -> Path:
    path = make_config(accounts, rules, **kw)
    data = yaml.safe_load(path.read_text())
    data["control"] = {"socket": str(socket_dir / "control.sock")}
    data.update(extra or {})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rule(*followers: str, name: str = "main", **settings: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": "master",
        "destinations": [{"account": f, **settings} for f in followers],
    }


async def ctl(socket_dir: Path, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """Run ``cmamd ctl ARGV`` (the real parser, client and rendering) off the event loop."""
    args = build_parser("ctl").parse_args(
        ["ctl", "--socket", str(socket_dir / "control.sock"), *argv]
    )
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(command.run, args, {}, io.StringIO(stdin), out, err)
    return code, out.getvalue(), err.getvalue()


async def status(socket_dir: Path) -> dict[str, Any]:
    code, out, err = await ctl(socket_dir, "status", "--json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def destination(doc: dict[str, Any], follower: str, rule_name: str = "main") -> dict[str, Any]:
    return next(
        d for d in doc["destinations"] if d["follower"] == follower and d["rule"] == rule_name
    )


def _copies_by_key(sim: SimServer, follower: int, master: int) -> list[tuple[str, Any]]:
    """(master item key, position) of each of the follower's copies of ``master``."""
    return [
        (parsed[1], p)
        for p in sim.broker.positions(follower)
        if (parsed := parse_label(p.label)) is not None and parsed[0] == master
    ]


def copies(sim: SimServer, follower: int, master: int) -> list[Any]:
    return [p for _, p in _copies_by_key(sim, follower, master)]


def copied_keys(sim: SimServer, follower: int, master: int) -> list[str]:
    """The master item keys (``p<id>``) of the follower's copies of ``master``."""
    return [key for key, _ in _copies_by_key(sim, follower, master)]

"""Hostile or broken config files: a config error (exit 78 at start), never a traceback,
a hang or gigabytes; upper bounds on sizes and timeouts; placeholders are named."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from config_kit import BASE, Workspace, edit

from cmamd.config import (
    ConfigError,
    ConfigUnreadable,
    load_config,
    load_config_report,
    placeholders,
)
from cmamd.daemon.launch import run_daemon
from cmamd.daemon.supervisor import EX_CONFIG

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def deep_flow(levels: int) -> str:
    return BASE + "x: " + "[" * levels + "]" * levels + "\n"


def deep_block(levels: int) -> str:
    return BASE + "".join(f"{'  ' * i}k{i}:\n" for i in range(levels)) + "  " * levels + "v\n"


def alias_bomb(as_key: bool) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):  # 10^10 nodes once expanded
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("? *a9\n: boom" if as_key else "boom: *a9")
    return BASE + "\n".join(lines) + "\n"


HOSTILE = {
    "NUL byte": BASE.replace('"1234_abc"', '"1234\0abc"'),
    "1000 levels in flow style": deep_flow(1000),
    "1000 levels in block style": deep_block(1000),
    "5000-digit integer": BASE.replace("account_id: 1001", "account_id: " + "9" * 5000),
    "alias bomb as a value": alias_bomb(as_key=False),
    "alias bomb as a mapping key": alias_bomb(as_key=True),
    "alias inside its own anchor": BASE + "loop: &l [*l]\n",
    "impossible date": BASE + "when: 2024-13-45\n",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_yaml_is_a_config_error_found_fast(name: str, tmp_path: Path) -> None:
    path = Workspace.create(tmp_path).write(HOSTILE[name])
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert time.monotonic() - started < 2.0
    assert str(caught.value).startswith(f"{path}")
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize("name", ["NUL byte", "1000 levels in flow style", "5000-digit integer"])
async def test_the_daemon_exits_78_on_hostile_yaml(name: str, tmp_path: Path) -> None:
    path = Workspace.create(tmp_path).write(HOSTILE[name])
    assert await run_daemon(path, environ={}) == EX_CONFIG


def in_thread(call: Callable[[], object], timeout: float = 5.0) -> BaseException | None:
    """Run ``call`` off the test's thread: a blocking open must fail the test, not hang it."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert outcome, f"still blocked after {timeout} s"
    return outcome[0]


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    error = in_thread(lambda: load_config(fifo, environ={}))
    assert isinstance(error, ConfigUnreadable)
    assert "not a regular file (a FIFO)" in str(error)


def test_a_fifo_as_secret_file_is_refused_without_blocking(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    (tmp_path / "client_secret").unlink()
    os.mkfifo(tmp_path / "client_secret")
    error = in_thread(lambda: load_config(workspace.write(BASE), environ={}))
    assert isinstance(error, ConfigError)
    assert "not a regular file" in str(error)


def test_a_device_as_config_is_refused(tmp_path: Path) -> None:
    error = in_thread(lambda: load_config(Path("/dev/zero"), environ={}))
    assert isinstance(error, ConfigUnreadable)


BOUNDS = [
    ("volume: {mode: multiplier, value: 1.0, ", "volume: {mode: multiplier, value: 1e400, "),
    ("volume: {mode: multiplier, value: 1.0, ", "volume: {mode: multiplier, value: 1001, "),
    ("volume: {mode: multiplier, value: 1.0, ", "volume: {mode: multiplier, value: .inf, "),
    ("volume: {mode: multiplier, value: 1.0, ", "volume: {mode: equity_ratio, value: 5000, "),
    ("{mode: fixed_lots, value: 0.1}", "{mode: fixed_lots, value: 10001}"),
    ("min_lots: 0.01, max_lots: 5}", "min_lots: 0.01, max_lots: 1e9}"),
    ("  tls: true\n", "  tls: true\n  silence_timeout_s: .inf\n"),
    ("  tls: true\n", "  tls: true\n  silence_timeout_s: 301\n"),
    ("account_id: 1001", "account_id: 9223372036854775808"),  # above int64
]


@pytest.mark.parametrize(("old", "new"), BOUNDS)
def test_absurd_sizes_and_timeouts_are_rejected(old: str, new: str, tmp_path: Path) -> None:
    path = Workspace.create(tmp_path).write(edit(BASE, old, new))
    with pytest.raises(ConfigError):
        load_config(path, environ={})


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    text = edit(BASE, "value: 1.0, min_lots: 0.01, max_lots: 5}", "value: 1000, max_lots: 10000}")
    text = edit(text, "{mode: fixed_lots, value: 0.1}", "{mode: fixed_lots, value: 10000}")
    text = edit(text, "  tls: true\n", "  tls: true\n  silence_timeout_s: 300\n")
    config = load_config(Workspace.create(tmp_path).write(text), environ={})
    assert config.api.silence_timeout_s == 300


def test_placeholders_match_the_example_and_are_warned_about(tmp_path: Path) -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    assert example["api"]["client_id"] == placeholders.EXAMPLE_CLIENT_ID
    assert {a["account_id"] for a in example["accounts"]} == placeholders.EXAMPLE_ACCOUNT_IDS
    text = edit(BASE, '"1234_abc"', f'"{placeholders.EXAMPLE_CLIENT_ID}"')
    text = edit(text, "account_id: 1002", "account_id: 23456789")
    warned = load_config_report(Workspace.create(tmp_path).write(text), environ={}).warnings
    placeholder = [(w.path, w.line) for w in warned if "placeholder" in w.message]
    assert placeholder == [("api.client_id", 2), ("accounts[1].account_id", 13)]


def test_a_real_looking_config_has_no_placeholder_warning(tmp_path: Path) -> None:
    warned = load_config_report(Workspace.create(tmp_path).write(BASE), environ={}).warnings
    assert not [w for w in warned if "placeholder" in w.message]


async def test_the_daemon_warns_about_placeholders_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = Workspace.create(tmp_path)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    text = edit(BASE, "account_id: 1001", "account_id: 12345678")
    text = "state_dir: " + str(blocker) + "\n" + text  # start stops right after the warnings
    await run_daemon(workspace.write(text), environ={})
    out = capsys.readouterr().out
    assert "configuration warning" in out and "12345678 is the example's placeholder" in out

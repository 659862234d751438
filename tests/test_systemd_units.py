"""The shipped systemd units: verified by systemd itself, sandbox scored, kept in sync."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from cmamd.cli import COMMANDS
from cmamd.config.default_path import DEFAULT_CONFIG

UNITS_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNITS = ["cmamd.service", "cmamd@.service", "cmamd-notify-reload.service"]
INSTALLED_BINARY = "/usr/bin/cmamd"
MAX_EXPOSURE = 2.5  # systemd-analyze security calls <= 2.5 "OK"
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def systemd_version() -> int:
    assert ANALYZE is not None
    first = subprocess.run(
        [ANALYZE, "--version"], capture_output=True, text=True, check=True
    ).stdout.split("\n")[0]
    match = re.match(r"systemd (\d+)", first)
    assert match, first
    return int(match.group(1))


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in order; systemd allows repeated keys, so no dict."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_text(name: str) -> str:
    return (UNITS_DIR / name).read_text()


def values(name: str, key: str) -> list[str]:
    return [v for _, k, v in parse_unit(unit_text(name)) if k == key]


def install_copy(name: str, tmp_path: Path, text: str | None = None) -> Path:
    """The unit in tmp with its binary pointing at a real executable (verify checks it)."""
    wrapper = tmp_path / "bin" / "cmamd"
    if not wrapper.exists():
        wrapper.parent.mkdir()
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cmamd "$@"\n')
        wrapper.chmod(0o755)
    text = (text if text is not None else unit_text(name)).replace(INSTALLED_BINARY, str(wrapper))
    # a template cannot be loaded by itself: verify an instance of it
    target = tmp_path / name.replace("@.", "@shard1.")
    target.write_text(text)
    return target


def verify_complaints(unit: Path) -> tuple[int, list[str]]:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYSTEMD_LOG_COLOR": "0", "PATH": "/usr/bin:/bin", "LANG": "C"},
    )
    # verify also loads the system's own units and may complain about them: keep ours
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if unit.name in line or str(unit.parent) in line
    ]
    return result.returncode, ours


# Directives that systemd 252 does not know yet (the notify-reload variant needs >= 253).
NEWER_THAN_252 = ("notify-reload", "ReloadSignal")


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_is_clean(name: str, tmp_path: Path) -> None:
    code, complaints = verify_complaints(install_copy(name, tmp_path))
    if name == "cmamd-notify-reload.service" and systemd_version() < 253:
        complaints = [c for c in complaints if not any(k in c for k in NEWER_THAN_252)]
    assert complaints == []
    assert code == 0


@needs_analyze
def test_verify_complaints_about_our_unit_are_not_filtered_away(tmp_path: Path) -> None:
    broken = unit_text("cmamd.service").replace("Restart=on-failure", "Restart=sometimes")
    broken += "\n[Service]\nNoSuchDirective=1\n"
    _, complaints = verify_complaints(install_copy("cmamd.service", tmp_path, broken))
    assert any("NoSuchDirective" in c for c in complaints)
    assert any("sometimes" in c for c in complaints)


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_sandbox_exposure_is_ok(name: str, tmp_path: Path) -> None:
    if systemd_version() < 250:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    assert ANALYZE is not None
    unit = install_copy(name, tmp_path)
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYSTEMD_LOG_COLOR": "0", "PATH": "/usr/bin:/bin", "LANG": "C"},
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def sandbox_section(name: str) -> list[tuple[str, str, str]]:
    entries = parse_unit(unit_text(name))
    start = next(i for i, (_, key, _) in enumerate(entries) if key == "DynamicUser")
    return entries[start:]


def test_variants_share_the_sandbox_of_the_main_unit() -> None:
    main = sandbox_section("cmamd.service")
    assert ("Service", "MemoryDenyWriteExecute", "yes") in main
    for variant in UNITS[1:]:
        assert sandbox_section(variant) == main, variant


@pytest.mark.parametrize("name", UNITS)
def test_service_essentials(name: str) -> None:
    assert values(name, "Restart") == ["on-failure"]
    assert values(name, "WatchdogSec") == ["30"]
    assert values(name, "NotifyAccess") == ["main"]
    assert values(name, "DynamicUser") == ["yes"]
    assert values(name, "StateDirectoryMode") == ["0700"]
    assert values(name, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert values(name, "CapabilityBoundingSet") == [""]
    assert values(name, "IPAddressDeny") == []
    assert values(name, "WantedBy") == ["multi-user.target"]


def test_main_unit_runs_the_default_config_and_reloads_through_the_cli() -> None:
    assert values("cmamd.service", "Type") == ["notify"]
    assert values("cmamd.service", "ExecStart") == [
        f"{INSTALLED_BINARY} run --config {DEFAULT_CONFIG}"
    ]
    assert values("cmamd.service", "ExecReload") == [f"{INSTALLED_BINARY} reload --pid $MAINPID"]
    assert values("cmamd.service", "StateDirectory") == ["cmamd"]
    assert values("cmamd.service", "LoadCredential") == ["client_secret:/etc/cmamd/client_secret"]


def test_template_instances_are_separate() -> None:
    assert values("cmamd@.service", "ExecStart") == [
        f"{INSTALLED_BINARY} run --config /etc/cmamd/%i.yaml"
    ]
    assert values("cmamd@.service", "StateDirectory") == ["cmamd/%i"]
    assert values("cmamd@.service", "LoadCredential") == [
        "client_secret:/etc/cmamd/%i.client_secret"
    ]


def test_notify_reload_variant_has_no_exec_reload() -> None:
    assert values("cmamd-notify-reload.service", "Type") == ["notify-reload"]
    assert values("cmamd-notify-reload.service", "ExecReload") == []


def command_lines() -> list[tuple[str, str]]:
    return [
        (name, line)
        for name in UNITS
        for key in ("ExecStart", "ExecReload")
        for line in values(name, key)
    ]


@pytest.mark.parametrize(("name", "line"), command_lines())
def test_unit_command_lines_parse_with_the_real_cli(name: str, line: str) -> None:
    binary, command, *rest = shlex.split(line.replace("$MAINPID", "4242").replace("%i", "shard1"))
    assert binary == INSTALLED_BINARY
    assert command in COMMANDS, f"{name}: no sub-command {command!r}"
    try:
        module = import_module(COMMANDS[command][0])
    except ModuleNotFoundError as exc:
        pytest.skip(f"{COMMANDS[command][0]} is not written yet ({exc})")
    parser = argparse.ArgumentParser(prog=f"cmamd {command}", exit_on_error=False)
    module.add_arguments(parser)
    try:
        parser.parse_args(rest)
    except (argparse.ArgumentError, SystemExit) as exc:  # required arguments still exit
        pytest.fail(f"{name}: {line!r} does not parse: {exc}")


@pytest.mark.parametrize("name", UNITS)
def test_systemd_never_has_to_kill_a_default_shutdown(name: str) -> None:
    # the daemon's whole shutdown is bounded (daemon/shutdown.py): the drain, the teardown,
    # and past that budget at most two floors per step (its run, its cancellation)
    from cmamd.config.models import Config
    from cmamd.daemon.timing import DaemonTiming

    timing = DaemonTiming()
    drain_s = Config.model_fields["shutdown_timeout_s"].default
    steps = 6  # control socket, drain, workers, sessions, hub, connections
    worst_s = drain_s + timing.teardown_s + steps * 2 * timing.shutdown_step_min_s
    (stop_timeout,) = values(name, "TimeoutStopSec")
    assert float(stop_timeout) > worst_s, (stop_timeout, worst_s)

"""The `cmamd` command line, run as users run it: `python -m cmamd ...` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmamd import __version__
from cmamd.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def cmamd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cmamd", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
    )


def test_version() -> None:
    done = cmamd("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cmamd {__version__}"


def test_unknown_command_exits_2_naming_the_choices() -> None:
    done = cmamd("frobnicate")
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr
    assert all(name in done.stderr for name in COMMANDS)
    assert done.stdout == ""


def test_no_command_exits_2() -> None:
    done = cmamd()
    assert done.returncode == 2
    assert "required" in done.stderr


def test_top_level_help_lists_every_command() -> None:
    done = cmamd("--help")
    assert done.returncode == 0, done.stderr
    for name, (_module, help_text) in COMMANDS.items():
        assert name in done.stdout and help_text in done.stdout


# an option each command's own module adds: proves its arguments were loaded
OWN_OPTION = {
    "run": "--config",
    "reload": "--pid",
    "check-config": "--quiet",
    "sim": "--describe",
    "demo": "--state-dir",
    "auth": "--scope",
    "accounts": "--remote",
    "ctl": "--socket",
    "reset-tokens": "--account",
}


def test_every_command_is_covered_here() -> None:
    assert set(OWN_OPTION) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(OWN_OPTION))
def test_each_command_has_working_help(command: str) -> None:
    done = cmamd(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: cmamd {command}")
    assert COMMANDS[command][1] in done.stdout
    assert OWN_OPTION[command] in done.stdout
    assert done.stderr == ""


def test_a_bad_option_of_a_command_exits_2() -> None:
    done = cmamd("run", "--no-such-option")
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-option" in done.stderr

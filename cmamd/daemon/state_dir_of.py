"""Where a running daemon keeps its state, as ``cmamd reload`` must find it.

The daemon writes the reload outcome into its ``state_dir``, which its config may set to
anything: looking only at $STATE_DIRECTORY or /var/lib/cmamd waits in the wrong place and
reports a failure for a reload that worked. Order: ``--state-dir``; the ``state_dir`` of
the config (``--config``, else the one the process was started with, read from
/proc/<pid>/cmdline); $STATE_DIRECTORY; /var/lib/cmamd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_STATE_DIR = Path("/var/lib/cmamd")
MAX_CONFIG_BYTES = 1 << 20


def config_of_process(pid: int, proc: Path = Path("/proc")) -> Path | None:
    """The ``--config`` path the process ``pid`` was started with (absolute), if any."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(proc / str(pid) / "cwd"))
    except OSError:
        return None
    args = [os.fsdecode(a) for a in argv if a]
    for index, arg in enumerate(args):
        value = None
        if arg == "--config" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        if value:
            path = Path(value)
            return path if path.is_absolute() else cwd / path
    return None


def state_dir_in(config: Path) -> Path | None:
    """The ``state_dir`` a config file sets (relative to the file), None if it sets none."""
    try:
        if not config.is_file():  # a FIFO or device would block the read
            return None
        with config.open("rb") as handle:
            text = handle.read(MAX_CONFIG_BYTES)
        data: Any = yaml.safe_load(text)
    except (OSError, yaml.YAMLError, ValueError, RecursionError):
        return None
    value = data.get("state_dir") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else config.parent / path


def state_dir_for_reload(
    pid: int,
    *,
    explicit: Path | None,
    config: Path | None,
    environ: Mapping[str, str],
    proc: Path = Path("/proc"),
) -> Path:
    if explicit is not None:
        return explicit
    config = config or config_of_process(pid, proc)
    if config is not None:
        found = state_dir_in(config)
        if found is not None:
            return found
    state_directory = environ.get("STATE_DIRECTORY")
    return Path(state_directory.split(":")[0]) if state_directory else DEFAULT_STATE_DIR

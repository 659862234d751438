"""From a config file to a running daemon: what happens before the `Daemon` exists.

The file is loaded and validated (invalid: exit 78, which the unit's
RestartPreventExitStatus leaves stopped), logging is configured from it and the state
store opened; only then is the daemon built, from the loaded config and the open store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Unpack

from cmamd.config import placeholders
from cmamd.config.loader import ConfigError, load_config
from cmamd.config.problems import format_path
from cmamd.daemon.supervisor import EX_CONFIG, Daemon, DaemonOptions
from cmamd.logs import configure_logging, get_logger
from cmamd.state.store import StateStore

log = get_logger("cmamd.daemon")


class NotStarted(Exception):
    """The daemon could not be built; ``exit_code`` is the process's."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def open_daemon(
    config_path: Path, *, environ: Mapping[str, str] | None = None, **options: Unpack[DaemonOptions]
) -> Daemon:
    """Load ``config_path``, configure logging, open the store, build the daemon
    (``options``: Daemon's keyword arguments). Raises NotStarted."""
    env = dict(os.environ if environ is None else environ)
    try:
        config = load_config(config_path, environ=env)
    except ConfigError as exc:
        configure_logging("info", "auto")
        log.error("invalid configuration", path=str(config_path), problems=str(exc).splitlines())
        raise NotStarted(EX_CONFIG) from exc
    configure_logging(config.logging.level, config.logging.format, secrets=config.secret_values())
    for loc, message in placeholders.warnings(config):  # the example's ids: cannot work
        log.warning("configuration warning", path=format_path(loc), problem=message)
    try:
        store = StateStore.open(config.state_dir)
    except Exception as exc:
        log.error("cannot open the state store", state_dir=str(config.state_dir), error=str(exc))
        raise NotStarted(EX_CONFIG if isinstance(exc, PermissionError) else 1) from exc
    try:
        return Daemon(config_path, config, store, environ=env, **options)
    except BaseException:
        store.close()
        raise


async def run_daemon(
    config_path: Path, *, environ: Mapping[str, str] | None = None, **options: Unpack[DaemonOptions]
) -> int:
    """``cmamd run``: the daemon's exit code."""
    try:
        daemon = open_daemon(config_path, environ=environ, **options)
    except NotStarted as exc:
        return exc.exit_code
    return await daemon.run()

"""``cmamd run``: the daemon systemd starts."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from cmamd.daemon.launch import run_daemon
from cmamd.logs import enable_logger_cache

DEFAULT_CONFIG = Path("/etc/cmamd/config.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"config file (default {DEFAULT_CONFIG})",
    )


def main(args: argparse.Namespace) -> int:
    enable_logger_cache()  # the daemon's own process: no test captures its loggers
    return asyncio.run(run_daemon(args.config))

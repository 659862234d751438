"""``cmamd run``: the daemon systemd starts."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmamd.config.default_path import DEFAULT_CONFIG
from cmamd.daemon.launch import run_daemon
from cmamd.daemon.shutdown import run_to_exit
from cmamd.logs import enable_logger_cache


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
    return run_to_exit(run_daemon(args.config))

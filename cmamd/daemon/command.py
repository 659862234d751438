"""``cmamd run``: the daemon systemd starts."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmamd.daemon.launch import run_daemon
from cmamd.daemon.shutdown import run_to_exit

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
    return run_to_exit(run_daemon(args.config))

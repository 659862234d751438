"""``cmamd run``: the daemon systemd starts."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from cmamd.daemon.launch import run_daemon

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
    return asyncio.run(run_daemon(args.config))

"""``cmamd reload``: SIGHUP the daemon and wait for the reload's outcome (ExecReload=)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from cmamd.daemon import reload_status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=int, required=True, help="the daemon's PID ($MAINPID)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the daemon's state_dir (default: $STATE_DIRECTORY, else /var/lib/cmamd)",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait (default 90)")


def main(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or Path(
        os.environ.get("STATE_DIRECTORY", "/var/lib/cmamd").split(":")[0]
    )
    before = reload_status.read(state_dir)
    try:
        os.kill(args.pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"cmamd reload: no process {args.pid}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        status = reload_status.read(state_dir)
        if status is not None and (before is None or status.seq > before.seq):
            if status.ok:
                print("configuration reloaded")
                return 0
            print("reload rejected, the running configuration is kept:", file=sys.stderr)
            for problem in status.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"cmamd reload: no outcome within {args.timeout:g} s", file=sys.stderr)
    return 1

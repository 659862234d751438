"""``cmamd reload``: SIGHUP the daemon and wait for the reload's outcome (ExecReload=)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from cmamd.daemon import reload_status
from cmamd.daemon.state_dir_of import state_dir_for_reload


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=int, required=True, help="the daemon's PID ($MAINPID)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the daemon's state_dir (default: the state_dir of its config, else "
        "$STATE_DIRECTORY, else /var/lib/cmamd)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the daemon's config (default: the --config it was started with)",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait (default 90)")


def main(args: argparse.Namespace) -> int:
    state_dir = state_dir_for_reload(
        args.pid, explicit=args.state_dir, config=args.config, environ=os.environ
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
            if status.partial:
                print("reload failed part-way (restart cmamd):", file=sys.stderr)
            else:
                print("reload rejected, the running configuration is kept:", file=sys.stderr)
            for problem in status.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"cmamd reload: no outcome within {args.timeout:g} s", file=sys.stderr)
    return 1

"""``cmamd demo``: the whole copier against the embedded simulated broker.

Starts the simulator's demo broker and a daemon with a demo configuration (one master;
three followers: a multiplier, an equity ratio onto a broker whose symbols carry a ".m"
suffix, and a reversed copy on a netted account), plays a scripted master session from
the master's own client, shows each copy as it lands with its latency, then the final
positions side by side, and ends with a verdict: exit 0 only when every follower holds
exactly what its rule prescribes.
"""

from __future__ import annotations

import argparse
import asyncio

from cmamd.demo.run import run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the simulator and the daemon running afterwards (Ctrl-C to stop)",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where the demo daemon keeps its state (default: a temp dir)",
    )


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run_demo(keep=args.keep, state_dir=args.state_dir))

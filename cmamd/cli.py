"""The ``cmamd`` command: one sub-command per job, each living in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from cmamd import __version__

# name -> (module, help). Each module exposes add_arguments(parser) and main(args) -> int;
# imported lazily so that `cmamd check-config` does not pay for the simulator, etc.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cmamd.daemon.command", "run the copier daemon (what systemd starts)"),
    "check-config": ("cmamd.config.check", "validate a config file and print a summary"),
    "sim": ("cmamd.sim.command", "run the simulated Open API server"),
    "demo": ("cmamd.demo", "run a scripted copy session against the embedded simulator"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmamd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cmamd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args._main
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

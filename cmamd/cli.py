"""cmamd: a headless trade copier and multi-account manager for cTrader (Open API)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from cmamd import __version__

# name -> (module, help). Each module exposes add_arguments(parser) and main(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cmamd.daemon.command", "run the copier daemon (what systemd starts)"),
    "reload": ("cmamd.daemon.reload", "reload a running daemon and wait for the outcome"),
    "check-config": ("cmamd.config.check", "validate a config file and print a summary"),
    "reset-tokens": ("cmamd.accounts.reset_tokens", "put the config's tokens of an account back"),
    "sim": ("cmamd.sim.command", "run the simulated Open API server"),
    "auth": ("cmamd.onboarding.auth", "grant cmamd access to cTrader accounts (OAuth)"),
    "accounts": ("cmamd.onboarding.accounts", "list the configured accounts and their tokens"),
    "demo": ("cmamd.demo", "run a scripted copy session against the embedded simulator"),
    "ctl": ("cmamd.control.command", "operate a running daemon: status, pause, flatten, orders"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``selected`` command's module is imported (and its options added)."""
    parser = argparse.ArgumentParser(prog="cmamd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cmamd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            module = import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in arguments if not a.startswith("-")), None)
    args = build_parser(selected).parse_args(arguments)
    run: Callable[[argparse.Namespace], int] = args._main
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

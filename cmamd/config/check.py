"""``cmamd check-config``: validate a config file like ``nginx -t`` and print a summary.

Exit 0 when valid (warnings go to stderr), 1 when invalid (one ``file:line: path:
message`` per problem on stderr), 2 when the file cannot be read. Secrets are never
printed: only where they come from.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from cmamd.config import operating
from cmamd.config.default_path import DEFAULT_CONFIG
from cmamd.config.loader import load_config_report
from cmamd.config.models import AccountConfig, ApiConfig, Config
from cmamd.config.problems import ConfigError, ConfigUnreadable
from cmamd.config.rules import CopyRule, Destination, VolumeMode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"config file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print errors only, no summary or warnings"
    )
    parser.add_argument(
        "--connect",
        action="store_true",
        help="then connect to each environment used and authenticate the application",
    )


def main(args: argparse.Namespace) -> int:
    return check(args.path, quiet=args.quiet, connect=args.connect)


def check(
    path: Path,
    *,
    quiet: bool = False,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    connect: bool = False,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        loaded = load_config_report(path, environ=os.environ if environ is None else environ)
    except ConfigError as exc:
        if connect and not isinstance(exc, ConfigUnreadable):
            from cmamd.onboarding.connect_check import check_before_accounts

            outcome = check_before_accounts(path, out, err)
            if outcome is not None:  # a new user's file: the api part only, no accounts yet
                return outcome
        print(exc, file=err)
        print(f"{path}: configuration invalid", file=err)
        return 2 if isinstance(exc, ConfigUnreadable) else 1
    if not quiet:
        for warning in loaded.warnings:
            print(f"warning: {warning.render(str(path))}", file=err)
        out.write(summary(loaded.config))
        print(f"{path}: configuration OK", file=out)
    if connect:
        from cmamd.onboarding.connect_check import check_connections

        if not check_connections(loaded.config, out):
            print(f"{path}: connection check FAILED", file=err)
            return 1
    return 0


def summary(config: Config) -> str:
    lines = [f"api: client {config.api.client_id}, secret from {_secret_source(config.api)}"]
    lines.append(
        f"state: {config.state_dir}  logging: {config.logging.level}/{config.logging.format}"
    )
    lines.append(f"accounts ({len(config.accounts)}):")
    width = max(len(account.name) for account in config.accounts)
    for account in config.accounts:
        flags = "" if account.enabled else "  (disabled)"
        for stem in ("access_token", "refresh_token"):
            source = _secret_source(account, stem)
            if source != "state store":
                flags += f"  initial {stem.replace('_', ' ')}: {source}"
        lines.append(
            f"  {account.name:<{width}}  {account.account_id:>10}  {account.environment}{flags}"
        )
    lines.append("connections:")
    for live in (False, True):
        count = sum(1 for account in config.enabled_accounts if account.live == live)
        if count:
            lines.append(
                f"  {'live' if live else 'demo'}: {config.api.connections_for(live)} x "
                f"{config.api.url_for(live)} for {count} account{'s' if count != 1 else ''}, "
                f"<= {config.api.max_rps} req/s each"
            )
    lines.append(f"copy rules ({len(config.copy_rules)}):")
    lines += [line for rule in config.copy_rules for line in _rule_lines(rule)]
    lines += operating.summary_lines(config)
    return "\n".join(lines) + "\n"


def _secret_source(section: ApiConfig | AccountConfig, stem: str = "client_secret") -> str:
    if getattr(section, f"{stem}_file") is not None:
        return f"file {getattr(section, f'{stem}_file')}"
    if getattr(section, f"{stem}_credential") is not None:
        return f"credential {getattr(section, f'{stem}_credential')}"
    return "inline value" if getattr(section, stem) is not None else "state store"


def _rule_lines(rule: CopyRule) -> list[str]:
    state = "" if rule.enabled else "  (disabled)"
    lines = [f"  {rule.name}: {rule.source} ->{state}"]
    lines += [
        f"    {destination.account}: {describe_destination(destination)}"
        for destination in rule.destinations
    ]
    return lines


def describe_destination(destination: Destination) -> str:
    volume = destination.volume
    sizing = {
        VolumeMode.MULTIPLIER: f"lots x {volume.value}",
        VolumeMode.FIXED_LOTS: f"{volume.value} lots",
        VolumeMode.BALANCE_RATIO: f"balance ratio x {volume.value}",
        VolumeMode.EQUITY_RATIO: f"equity ratio x {volume.value}",
        VolumeMode.RISK_PERCENT: f"risk {volume.value}% of equity",
    }[volume.mode]
    parts = [f"mode {destination.mode.value}", sizing]
    if volume.min_lots is not None or volume.max_lots is not None:
        parts.append(f"lots {volume.min_lots or '-'}..{volume.max_lots or '-'}")
    symbols = destination.symbols
    if symbols.map:
        parts.append("map " + ", ".join(f"{k}->{v}" for k, v in symbols.map.items()))
    for key in ("strip_prefix", "strip_suffix", "add_prefix", "add_suffix"):
        if getattr(symbols, key):
            parts.append(f"{key} {getattr(symbols, key)!r}")
    if symbols.include:
        parts.append("only " + ", ".join(symbols.include))
    if symbols.exclude:
        parts.append("not " + ", ".join(symbols.exclude))
    if destination.sides.value != "both":
        parts.append(f"{destination.sides.value} only")
    if destination.reverse:
        parts.append("reversed")
    if destination.equity_stop is not None:
        parts.append(f"equity stop below {destination.equity_stop.below}")
    return ", ".join(parts)


if __name__ == "__main__":  # `python -m cmamd.config.check PATH`, without the full CLI
    _parser = argparse.ArgumentParser(prog="cmamd check-config", description=__doc__)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))

"""``cmamd reset-tokens``: put the config's token pair of one account back in the store.

The store's pair wins over the config's once there is one (it is the rotated, current
pair). When it is wrong for good (a typo at first start, a revoked grant), this is the
supported way out: stop the daemon, fix the account's access_token/refresh_token in the
config, run this for the account, start again.
"""

from __future__ import annotations

import argparse
import os
import sys

from cmamd.accounts.token_keeper import bootstrap_pair
from cmamd.config.default_path import add_config_option
from cmamd.config.loader import ConfigError, load_config
from cmamd.state.store import StateStore, wall_clock_ms

EX_CONFIG = 78


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", required=True, help="the account's name in the config")
    add_config_option(parser)


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, environ=os.environ)
    except ConfigError as exc:
        print(f"cmamd reset-tokens: invalid configuration:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    account = next((a for a in config.accounts if a.name == args.account), None)
    if account is None:
        print(f"cmamd reset-tokens: no account {args.account!r} in {args.config}", file=sys.stderr)
        return EX_CONFIG
    access, refresh = account.initial_access_token, account.initial_refresh_token
    if access is None and refresh is None:
        print(
            f"cmamd reset-tokens: accounts.{account.name} has no access_token/refresh_token "
            "in the config: set them first",
            file=sys.stderr,
        )
        return EX_CONFIG
    try:
        store = StateStore.open(config.state_dir)
    except Exception as exc:  # the daemon holds the store's lock while it runs
        print(
            f"cmamd reset-tokens: cannot open the state store in {config.state_dir} ({exc}); "
            "stop cmamd first",
            file=sys.stderr,
        )
        return 1
    with store:
        pair = bootstrap_pair(
            access.get_secret_value() if access else None,
            refresh.get_secret_value() if refresh else None,
            wall_clock_ms(),
        )
        store.put_tokens(account.account_id, pair)
    print(f"tokens of {account.name} reset to the config's pair; start cmamd to use them")
    return 0

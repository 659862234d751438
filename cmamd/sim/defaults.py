"""The default demo broker: ``SimConfig.default()``.

Two brokers quote the same instruments: "Demo Markets" under their plain names and
"Suffix Markets" with a ".m" suffix and other symbol ids, so symbol mapping across brokers
is exercised. Two cTrader IDs: "masters" owns both master accounts, "followers" (a money
manager) owns the three followers; one token pair per cTID authorises all of its accounts.
Plain data: ``SimConfig`` validates it and uses it for every key it is not given.
"""

from __future__ import annotations

import random
from typing import Any


def generated_token(seed: int, purpose: str) -> str:
    """A random-looking but reproducible token (fake credentials of a local simulator)."""
    return f"{random.Random(f'{seed}:{purpose}').getrandbits(160):040x}"


DEFAULT_SEED = 20240715
CLIENT_ID = "cmamd-demo-app"
CLIENT_SECRET = generated_token(DEFAULT_SEED, "client-secret")

ASSETS = [
    {"asset_id": 1, "name": "USD", "digits": 2},
    {"asset_id": 2, "name": "EUR", "digits": 2},
    {"asset_id": 3, "name": "GBP", "digits": 2},
    {"asset_id": 4, "name": "JPY", "digits": 0},
    {"asset_id": 5, "name": "XAU", "digits": 2},
    {"asset_id": 6, "name": "US500", "digits": 2},
]

# name, base, quote, digits, pip position, lot size, min, step, max (cents), bid, ask
_INSTRUMENTS: list[tuple[str, str, str, int, int, int, int, int, int, float, float]] = [
    ("EURUSD", "EUR", "USD", 5, 4, 10_000_000, 100_000, 100_000, 10_000_000_000, 1.08000, 1.08010),
    ("GBPUSD", "GBP", "USD", 5, 4, 10_000_000, 100_000, 100_000, 10_000_000_000, 1.26500, 1.26514),
    ("USDJPY", "USD", "JPY", 3, 2, 10_000_000, 100_000, 100_000, 10_000_000_000, 150.000, 150.012),
    # gold: a lot is 100 oz, trades in steps of 1 oz
    ("XAUUSD", "XAU", "USD", 2, 2, 10_000, 100, 100, 1_000_000, 2350.00, 2350.35),
    # index CFD: a lot is 1 unit, trades in steps of 0.1
    ("US500", "US500", "USD", 2, 1, 100, 10, 10, 100_000, 5200.00, 5200.50),
]


def _symbols(first_id: int, suffix: str) -> list[dict[str, Any]]:
    return [
        {
            "symbol_id": first_id + index,
            "name": name + suffix,
            "base_asset": base,
            "quote_asset": quote,
            "digits": digits,
            "pip_position": pip,
            "lot_size": lot,
            "min_volume": min_volume,
            "step_volume": step,
            "max_volume": max_volume,
            "bid": bid,
            "ask": ask,
            "description": f"{base}/{quote}",
        }
        for index, (
            name,
            base,
            quote,
            digits,
            pip,
            lot,
            min_volume,
            step,
            max_volume,
            bid,
            ask,
        ) in enumerate(_INSTRUMENTS)
    ]


def _account(
    name: str, account_id: int, login: int, broker: str, kind: str, balance: int
) -> dict[str, Any]:
    return {
        "name": name,
        "account_id": account_id,
        "trader_login": login,
        "broker": broker,
        "kind": kind,
        "balance": balance,
        "deposit_asset": "USD",
        "money_digits": 2,
        "leverage_in_cents": 10_000,
    }


def default_config_data() -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "environment": "demo",
        "seed": DEFAULT_SEED,
        "assets": ASSETS,
        "brokers": [
            {"name": "Demo Markets", "symbols": _symbols(1, "")},
            {"name": "Suffix Markets", "symbols": _symbols(101, ".m")},
        ],
        "ctids": [
            {
                "name": "masters",
                "accounts": [
                    _account("master", 3_101_001, 7_700_101, "Demo Markets", "hedged", 100_000),
                    _account(
                        "master-netted", 3_101_002, 7_700_102, "Demo Markets", "netted", 100_000
                    ),
                ],
            },
            {
                "name": "followers",
                "accounts": [
                    _account(
                        "follower-hedged", 3_202_001, 7_700_201, "Demo Markets", "hedged", 50_000
                    ),
                    _account(
                        "follower-suffix", 3_202_002, 7_700_202, "Suffix Markets", "hedged", 25_000
                    ),
                    _account(
                        "follower-netted", 3_202_003, 7_700_203, "Demo Markets", "netted", 20_000
                    ),
                ],
            },
        ],
    }

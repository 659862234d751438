"""Values copied from config.example.yaml (or obvious fill-me-ins) left in a real config.

They validate — an example is meant to — so without a word the daemon would try to log in
with someone else's made-up ids and fail in ways that do not point at the cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmamd.config.problems import Loc

if TYPE_CHECKING:
    from cmamd.config.models import Config

# Kept equal to config.example.yaml by tests/config/test_config_hostile.py.
EXAMPLE_CLIENT_ID = "1234_abcdefghijklmnopqrstuvwxyz"
EXAMPLE_ACCOUNT_IDS = frozenset({12345678, 23456789, 34567890, 45678901})
FILL_ME_IN = ("your", "changeme", "change_me", "placeholder", "xxxx", "example")


def warnings(config: Config) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    client_id = config.api.client_id
    if client_id == EXAMPLE_CLIENT_ID or any(word in client_id.lower() for word in FILL_ME_IN):
        found.append(
            (
                ("api", "client_id"),
                f"client_id {client_id!r} looks like a placeholder (config.example.yaml): "
                "put your Open API application's id here",
            )
        )
    for index, account in enumerate(config.accounts):
        if account.account_id in EXAMPLE_ACCOUNT_IDS:
            found.append(
                (
                    ("accounts", index, "account_id"),
                    f"account_id {account.account_id} is the example's placeholder: "
                    "put the account's ctidTraderAccountId here",
                )
            )
    return found

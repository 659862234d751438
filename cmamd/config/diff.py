"""What changed between two configs, so a SIGHUP reload touches only what it must.

Comparisons include the resolved secrets (a rotated client secret file means the
connections must be rebuilt) without ever exposing them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from cmamd.config.models import Config


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    accounts_added: list[str]
    accounts_removed: list[str]
    accounts_changed: list[str]  # same name, any setting differs (id, live, enabled, tokens)
    rules_changed: bool
    api_changed: bool  # connections must be rebuilt
    logging_changed: bool
    state_dir_changed: bool  # cannot be applied by a reload: needs a restart
    shutdown_timeout_changed: bool

    @property
    def unchanged(self) -> bool:
        return not (
            self.accounts_added
            or self.accounts_removed
            or self.accounts_changed
            or self.rules_changed
            or self.api_changed
            or self.logging_changed
            or self.state_dir_changed
            or self.shutdown_timeout_changed
        )

    def describe(self) -> str:
        """One line for the log, e.g. ``accounts +f3 -f1 ~master; rules; api``."""
        if self.unchanged:
            return "no changes"
        parts: list[str] = []
        accounts = [f"+{n}" for n in self.accounts_added]
        accounts += [f"-{n}" for n in self.accounts_removed]
        accounts += [f"~{n}" for n in self.accounts_changed]
        if accounts:
            parts.append("accounts " + " ".join(accounts))
        flags = {
            "rules": self.rules_changed,
            "api": self.api_changed,
            "logging": self.logging_changed,
            "state_dir (restart needed)": self.state_dir_changed,
            "shutdown_timeout_s": self.shutdown_timeout_changed,
        }
        parts += [name for name, changed in flags.items() if changed]
        return "; ".join(parts)


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    old_accounts = {account.name: account for account in old.accounts}
    new_accounts = {account.name: account for account in new.accounts}
    return ConfigDiff(
        accounts_added=[name for name in new_accounts if name not in old_accounts],
        accounts_removed=[name for name in old_accounts if name not in new_accounts],
        accounts_changed=[
            name
            for name, account in new_accounts.items()
            if name in old_accounts and old_accounts[name] != account
        ],
        rules_changed=old.copy_rules != new.copy_rules,
        api_changed=old.api != new.api,
        logging_changed=old.logging != new.logging,
        state_dir_changed=old.state_dir != new.state_dir,
        shutdown_timeout_changed=old.shutdown_timeout_s != new.shutdown_timeout_s,
    )


def fingerprint_of(model: BaseModel) -> str:
    """A short stable digest of a config or section (secrets included, only hashed).

    Equal models give equal fingerprints; logged on start and reload so that two log lines
    can be compared for "same configuration?" without showing the configuration.
    """
    dump = model.model_dump(mode="json", by_alias=True)
    payload = json.dumps([dump, _secrets_in(model)], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _secrets_in(value: Any) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, BaseModel):
        found: list[str] = []
        for private in (value.__pydantic_private__ or {}).values():
            found += _secrets_in(private)
        for name in type(value).model_fields:
            found += _secrets_in(getattr(value, name))
        return found
    if isinstance(value, list | tuple):
        return [secret for item in value for secret in _secrets_in(item)]
    if isinstance(value, dict):
        return [secret for item in value.values() for secret in _secrets_in(item)]
    return []

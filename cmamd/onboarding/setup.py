"""What every onboarding command starts with: the config (accounts optional), quiet logs."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cmamd.config.default_path import DEFAULT_CONFIG
from cmamd.config.loader import load_config, problems_from
from cmamd.config.models import AccountConfig, Config
from cmamd.config.problems import ConfigError, Problem
from cmamd.config.secrets import LoadContext
from cmamd.config.yamlsource import YamlProblems, parse_yaml
from cmamd.logs import configure_logging
from cmamd.onboarding.errors import OnboardingError

# Stands in for the accounts of a file that has none yet (a new user's first `cmamd auth`).
_PLACEHOLDER = {"name": "placeholder", "account_id": 1, "live": False}


@dataclass(frozen=True, slots=True)
class OnboardingConfig:
    config: Config
    has_accounts: bool

    @property
    def accounts(self) -> list[AccountConfig]:
        return list(self.config.accounts) if self.has_accounts else []


def load(path: Path) -> OnboardingConfig:
    """The config; a file without ``accounts:`` is accepted (the API part must be valid)."""
    try:
        return OnboardingConfig(load_config(path), True)
    except ConfigError as exc:
        original = exc
    data = _raw(path)
    if not isinstance(data, dict) or data.get("accounts"):
        raise OnboardingError(_config_message(original))
    context = LoadContext(environ=dict(os.environ), base_dir=path.absolute().parent)
    try:
        config = Config.model_validate(
            {**data, "accounts": [_PLACEHOLDER], "copy": []}, context=context
        )
    except ValidationError as exc:
        parsed = parse_yaml(path.read_text(encoding="utf-8"))
        raise OnboardingError(
            _config_message(ConfigError(str(path), problems_from(exc, parsed)))
        ) from None
    return OnboardingConfig(config, False)


def _raw(path: Path) -> Any:
    try:
        return parse_yaml(path.read_text(encoding="utf-8")).data
    except (OSError, UnicodeDecodeError, YamlProblems):
        return None


def _config_message(exc: ConfigError) -> str:
    return f"{exc}\nfix the configuration (`cmamd check-config` shows every problem)"


def quiet_logging(config: Config | None = None) -> None:
    """Library logs off the terminal (the command says what matters); secrets registered."""
    secrets = config.secret_values() if config is not None else []
    configure_logging("error", "console", stream=sys.stderr, secrets=secrets)
    logging.getLogger().setLevel(logging.CRITICAL + 1)


__all__ = ["DEFAULT_CONFIG", "OnboardingConfig", "Problem", "load", "quiet_logging"]

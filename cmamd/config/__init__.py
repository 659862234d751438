"""Configuration: the YAML file as validated models, its loader, reload diffs, check-config."""

from cmamd.config.diff import ConfigDiff, diff_configs, fingerprint_of
from cmamd.config.loader import LoadedConfig, load_config, load_config_report
from cmamd.config.models import AccountConfig, ApiConfig, Config, Connections, LoggingConfig
from cmamd.config.problems import ConfigError, ConfigUnreadable, Problem

__all__ = [
    "AccountConfig",
    "ApiConfig",
    "Config",
    "ConfigDiff",
    "ConfigError",
    "ConfigUnreadable",
    "Connections",
    "LoadedConfig",
    "LoggingConfig",
    "Problem",
    "diff_configs",
    "fingerprint_of",
    "load_config",
    "load_config_report",
]

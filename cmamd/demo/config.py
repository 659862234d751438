"""A daemon configuration pointed at a running simulator (demo, tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def sim_daemon_config(
    described: dict[str, Any],
    state_dir: Path,
    secret_file: Path,
    accounts: Iterable[str],
    rules: list[dict[str, Any]],
    *,
    bootstrap_tokens: bool = True,
    api: dict[str, Any] | None = None,
    logging: dict[str, Any] | None = None,
    shutdown_timeout_s: float | None = None,
) -> dict[str, Any]:
    """The YAML (as a dict) of a daemon copying ``rules`` between simulator ``accounts``.

    ``described`` is ``SimServer.describe()``. The client secret is written to
    ``secret_file`` (0600), as an operator would; each account gets its current tokens
    for bootstrap unless ``bootstrap_tokens`` is False. ``api`` keys override the defaults.
    """
    by_name = {a["name"]: a for a in described["accounts"]}
    secret_file.write_text(described["client_secret"])
    secret_file.chmod(0o600)
    entries = []
    for name in accounts:
        entry: dict[str, Any] = {
            "name": name,
            "account_id": by_name[name]["account_id"],
            "live": False,
        }
        if bootstrap_tokens:
            entry["access_token"] = by_name[name]["access_token"]
            entry["refresh_token"] = by_name[name]["refresh_token"]
        entries.append(entry)
    url = urlsplit(described["url"])
    config: dict[str, Any] = {
        "api": {
            "client_id": described["client_id"],
            "client_secret_file": str(secret_file),
            "demo_host": url.hostname,
            "port": url.port,
            "tls": url.scheme == "wss",  # plain ws:// is accepted for loopback only
            **(api or {}),
        },
        "state_dir": str(state_dir),
        "logging": logging or {"level": "info", "format": "json"},
        "accounts": entries,
        "copy": rules,
    }
    if shutdown_timeout_s is not None:
        config["shutdown_timeout_s"] = shutdown_timeout_s
    return config

"""Shared helpers for the config tests: a valid base file and ways to break it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CLIENT_SECRET = "CLIENT-SECRET-7f3a9c"  # recognisable, to grep outputs for leaks

BASE = """\
api:
  client_id: "1234_abc"
  client_secret_file: client_secret
  max_rps: 50
  heartbeat_interval_s: 10
  connections: {demo: 1, live: 1}
  tls: true
accounts:
  - name: master
    account_id: 1001
    live: false
  - name: follower1
    account_id: 1002
    live: false
  - name: follower2
    account_id: 1003
    live: true
copy:
  - name: main
    source: master
    destinations:
      - account: follower1
        volume: {mode: multiplier, value: 1.0, min_lots: 0.01, max_lots: 5}
        symbols: {map: {XAUUSD: GOLD}, add_suffix: ".m"}
        mode: on
      - account: follower2
        volume: {mode: fixed_lots, value: 0.1}
"""


@dataclass
class Workspace:
    """A config directory in tmp with the secret files the base config refers to."""

    root: Path
    credentials: Path

    @classmethod
    def create(cls, tmp_path: Path) -> Workspace:
        (tmp_path / "client_secret").write_text(CLIENT_SECRET + "\n")
        (tmp_path / "client_secret").chmod(0o600)
        (tmp_path / "empty_secret").write_text("\n")
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        return cls(tmp_path, credentials)

    def write(self, text: str, name: str = "config.yaml") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    @property
    def environ(self) -> dict[str, str]:
        return {"CREDENTIALS_DIRECTORY": str(self.credentials)}


def line_of(text: str, marker: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``marker``."""
    found = [n for n, line in enumerate(text.splitlines(), start=1) if marker in line]
    assert len(found) >= occurrence, f"{marker!r} not in the test config"
    return found[occurrence - 1]


def edit(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, f"{old!r} not in the test config"
    return text.replace(old, new, count)

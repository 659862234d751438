"""The outcome of the last SIGHUP reload, for ``cmamd reload`` (systemd's ExecReload).

``kill -HUP`` returns before the daemon has read the new file, so ExecReload runs
``cmamd reload``, which sends the signal and waits for this file's sequence number to move,
then exits non-zero when the reload was rejected: ``systemctl reload`` then fails visibly.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "reload-status.json"


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    seq: int
    ok: bool
    problems: list[str]
    at: float
    partial: bool = False
    """Failed part-way: some of the new configuration may be applied."""


def read(state_dir: Path) -> ReloadStatus | None:
    try:
        data = json.loads((state_dir / FILE_NAME).read_text())
        return ReloadStatus(
            int(data["seq"]),
            bool(data["ok"]),
            list(data["problems"]),
            float(data["at"]),
            bool(data.get("partial", False)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(state_dir: Path, *, ok: bool, problems: list[str], partial: bool = False) -> ReloadStatus:
    previous = read(state_dir)
    status = ReloadStatus((previous.seq if previous else 0) + 1, ok, problems, time.time(), partial)
    # write-then-rename: a reader never sees half a file
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".reload-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "seq": status.seq,
                "ok": ok,
                "problems": problems,
                "at": status.at,
                "partial": partial,
            },
            handle,
        )
    os.replace(tmp, state_dir / FILE_NAME)
    return status

"""The control journal: every control action (who, what, outcome) kept in the state store,
so the record outlives journald's rotation. A ring of ``KEPT`` meta rows: bounded, and
written with the store's own transactions (no schema change)."""

from __future__ import annotations

import json
import time
from typing import Any

from cmamd.state.store import StateStore

KEPT = 1000
_PREFIX = "ctl:journal:"
_SEQ = "ctl:journal-seq"


class ControlJournal:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def record(self, uid: int, pid: int, action: str, args: Any, result: str, message: str) -> None:
        seq = int(self._store.get_meta(_SEQ) or 0) + 1
        entry = {
            "seq": seq,
            "time_ms": int(time.time() * 1000),
            "uid": uid,
            "pid": pid,
            "action": action,
            "args": args,
            "result": result,
            "message": message,
        }
        self._store.set_meta(f"{_PREFIX}{seq % KEPT:04d}", json.dumps(entry, default=str))
        self._store.set_meta(_SEQ, str(seq))

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        entries = [json.loads(v) for v in self._store.meta_items(_PREFIX).values()]
        entries.sort(key=lambda e: e["seq"])
        return entries[-limit:]

"""What the demo prints: the script's steps, each copy as it lands, the final book."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from cmamd.protocol import units
from cmamd.replication.executor import CopyReport
from cmamd.sim.config import SymbolConfig
from cmamd.sim.snapshots import Position


class DemoView:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._t0 = time.monotonic()
        self.latencies: list[float] = []

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.line(f"\n[{time.monotonic() - self._t0:6.2f}s] master: {text}")

    def note(self, text: str) -> None:
        self.line(f"          -> {text}")

    def copy(self, report: CopyReport) -> None:
        if report.outcome == "done":
            self.latencies.append(report.latency_ms)
        marks = {"done": "ok", "rejected": "REJECTED", "unknown": "UNKNOWN", "deferred": "DEFERRED"}
        mark = marks[report.outcome]
        detail = f"  ({report.detail})" if report.detail else ""
        self.line(
            f"          -> {report.follower:<16} {report.summary:<46} "
            f"{report.latency_ms:7.1f} ms  {mark}{detail}"
        )

    def book(self, title: str, columns: list[tuple[str, list[str]]]) -> None:
        self.line(f"\n{title}")
        width = max(24, *(len(c[0]) + 2 for c in columns))
        self.line("  " + "".join(f"{name:<{width}}" for name, _ in columns))
        rows = max((len(lines) for _, lines in columns), default=0)
        for i in range(rows):
            cells = [lines[i] if i < len(lines) else "" for _, lines in columns]
            self.line("  " + "".join(f"{cell:<{width}}" for cell in cells))


def describe_position(position: Position, spec: SymbolConfig | None) -> str:
    name = spec.name if spec else str(position.symbol_id)
    if spec is None:
        return f"{name} {position.side.value} {position.volume} cents"
    return f"{name} {position.side.value} {units.format_lots(position.volume, spec.lot_size)}"

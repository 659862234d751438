"""Per-destination copy figures for ``ctl status``, fed by the replicator's reports."""

from __future__ import annotations

import statistics
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from cmamd.replication.executor import CopyReport

LATENCY_SAMPLES = 200  # the median is over this many recent copies


@dataclass(slots=True)
class DestinationFigures:
    done: int = 0
    rejected: int = 0
    unknown: int = 0
    deferred: int = 0
    rejected_codes: Counter[str] = field(default_factory=Counter)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def as_dict(self) -> dict[str, Any]:
        samples = list(self.latencies_ms)
        return {
            "done": self.done,
            "rejected": self.rejected,
            "unknown": self.unknown,
            "deferred": self.deferred,
            "rejected_codes": dict(self.rejected_codes),
            "last_latency_ms": round(samples[-1], 1) if samples else None,
            "median_latency_ms": round(statistics.median(samples), 1) if samples else None,
        }


class CopyFigures:
    def __init__(self) -> None:
        self._by_destination: dict[tuple[str, str], DestinationFigures] = {}

    def record(self, report: CopyReport) -> None:
        figures = self._by_destination.setdefault(
            (report.rule, report.follower), DestinationFigures()
        )
        if report.outcome == "done":
            figures.done += 1
            figures.latencies_ms.append(report.latency_ms)
        elif report.outcome == "rejected":
            figures.rejected += 1
            figures.rejected_codes[report.detail or "UNKNOWN"] += 1
        elif report.outcome == "unknown":
            figures.unknown += 1
        else:
            figures.deferred += 1

    def of(self, rule: str, follower: str) -> DestinationFigures:
        return self._by_destination.get((rule, follower), DestinationFigures())

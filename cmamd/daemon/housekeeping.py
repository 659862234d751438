"""Hourly: forget closed links and settled journal entries older than the history."""

from __future__ import annotations

from collections.abc import Callable

from cmamd.daemon.timing import DaemonTiming
from cmamd.logs import get_logger

log = get_logger("cmamd.daemon")

Prune = Callable[[int], int]
"""Forget what is older than a cutoff (epoch ms); how many were forgotten."""


class Housekeeping:
    def __init__(
        self,
        prune_links: Prune,
        prune_journal: Prune,
        timing: DaemonTiming,
        wall_clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self._prune_links = prune_links
        self._prune_journal = prune_journal
        self._timing = timing
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._last: float | None = None

    def run_if_due(self) -> None:
        now = self._monotonic()
        if self._last is not None and now - self._last < self._timing.housekeeping_interval_s:
            return
        self._last = now
        days = self._timing.history_days
        cutoff_ms = int((self._wall_clock() - days * 86400) * 1000)
        # only settled links whose master item is gone: the rest still guard against reopening
        links = self._prune_links(cutoff_ms)
        entries = self._prune_journal(cutoff_ms)
        if links or entries:
            log.info("state pruned", closed_links=links, journal_entries=entries, days=days)

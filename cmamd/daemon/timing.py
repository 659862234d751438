"""The daemon's own timing, in one value: production uses the defaults, tests pass their
own (a short status period, a fast P&L refresh) instead of patching module constants."""

from __future__ import annotations

from dataclasses import dataclass, field

from cmamd.accounts.timing import SessionTiming


@dataclass(frozen=True, slots=True)
class DaemonTiming:
    status_interval_s: float = 5.0
    """Period of the main loop's work: STATUS=, equity stops, housekeeping."""
    pnl_interval_s: float = 15.0
    """Refresh of an account's unrealised P&L where equity matters (equity sizing, stops)."""
    account_start_timeout_s: float = 120.0
    """How long start-up waits for accounts that make no progress before READY=1."""
    housekeeping_interval_s: float = 3600.0
    """Period of the pruning of old history."""
    history_days: int = 30
    """Closed links and settled journal entries are kept this long."""
    session: SessionTiming = field(default_factory=SessionTiming)
    """Each account session's (token rotation, re-authorisation watch)."""
    teardown_s: float = 4.0
    """What the shutdown's steps after the queue drain share (sessions, hub, sockets):
    the whole shutdown ends within ``shutdown_timeout_s`` + this (daemon/shutdown.py)."""
    shutdown_step_min_s: float = 0.25
    """Each shutdown step is still tried this long once the budget is spent."""

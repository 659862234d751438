"""An account session's timing, in one value: production uses the defaults, tests pass
their own (a fast store watch, an early rotation) instead of patching module constants.
The daemon hands it down from ``DaemonTiming.session``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionTiming:
    reauth_watch_s: float = 30.0
    """How often an account waiting for `cmamd auth` looks for a new pair in the store."""
    token_check_s: float = 3600.0
    """Expiry unknown (a bootstrap pair): the rotation timer looks again this often."""
    token_timer_min_s: float = 60.0
    """The rotation timer never wakes sooner than this (no busy loop on a due pair)."""
    lost_refresh_wait_s: float = 30.0
    """How long a lost refresh reply waits for the link before the held token is retried."""
    refresh_margin_ms: int = 24 * 3600 * 1000
    """Rotate a day before expiry: tokens live ~30 days, and a day survives long outages."""
    refresh_margin_fraction: float = 0.25
    """...but never more than this share of the token's lifetime before expiry: a token
    living less than four days is rotated once three quarters of its life have passed, not
    at once (a day's margin on a shorter lifetime would make every new token due on
    arrival)."""


PRODUCTION = SessionTiming()
"""The defaults, as one shared value (a default argument, where none is passed)."""

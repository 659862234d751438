"""Waiting at start-up until every account is ready or has visibly failed.

READY=1 tells systemd (and whoever waits on it) that the daemon copies; it must not come
while accounts are still loading. Accounts on one connection come up at the pace of its
request budget, so the time a start-up may take grows with the accounts: the wait ends when
all are settled, or when none has settled for ``stall_s`` (then STATUS names those still
starting, and they keep coming up in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Protocol

from cmamd.accounts.status import SETTLED
from cmamd.daemon.account_status import SessionView

CHECK_S = 0.25
"""How often the accounts are looked at again while none becomes ready."""


REACHABLE = frozenset({"connected", "ready"})  # connection states: authenticated link up


class LinkView(Protocol):
    @property
    def state(self) -> str: ...


class StartingSession(SessionView, Protocol):
    """What the wait looks at of an AccountSession."""

    name: str

    @property
    def connection(self) -> LinkView: ...


def is_settled(session: StartingSession) -> bool:
    # An account that cannot reach the server (no connection: host down, maintenance) has
    # visibly failed: STATUS names it with its reason and READY does not wait for its
    # retries. One whose link is up will come up at the pace of the budget.
    return (
        session.ready.is_set()
        or session.status in SETTLED  # not coming up by itself
        or (session.error is not None and session.connection.state not in REACHABLE)
    )


async def wait_until_settled(
    sessions: Callable[[], Iterable[StartingSession]],
    stall_s: float,
    monotonic: Callable[[], float],
    on_progress: Callable[[], None] | None = None,
) -> list[str]:
    """Until every session is ready or failed; returns the names of those still starting.
    ``monotonic`` is the daemon's clock (the stall is measured on it); ``on_progress`` is
    called whenever more accounts have settled (and once at first)."""
    settled = -1
    last_progress = monotonic()
    while True:
        current = list(sessions())
        pending = [s for s in current if not is_settled(s)]
        if not pending:
            return []
        if len(current) - len(pending) != settled:
            settled = len(current) - len(pending)
            last_progress = monotonic()
            if on_progress is not None:
                on_progress()
        left_s = last_progress + stall_s - monotonic()
        if left_s <= 0:
            return [s.name for s in pending]
        # the first pending account is the one most likely to be next (they start in order)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pending[0].ready.wait(), timeout=min(CHECK_S, left_s))

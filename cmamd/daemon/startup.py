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
import time
from collections.abc import Callable, Iterable

from cmamd.accounts.session import AccountSession

CHECK_S = 0.25
"""How often the accounts are looked at again while none becomes ready."""


SETTLED_STATES = frozenset({"failed", "stopped", "needs re-authorisation"})
"""Not ready, and not coming up by itself: waiting for them would hold READY back."""


REACHABLE = frozenset({"connected", "ready"})  # connection states: authenticated link up


def is_settled(session: AccountSession) -> bool:
    # An account that cannot reach the server (no connection: host down, maintenance) has
    # visibly failed: STATUS names it with its reason and READY does not wait for its
    # retries. One whose link is up will come up at the pace of the budget.
    return (
        session.ready.is_set()
        or session.status in SETTLED_STATES
        or (session.error is not None and session.connection.state not in REACHABLE)
    )


async def wait_until_settled(
    sessions: Callable[[], Iterable[AccountSession]],
    stall_s: float,
    on_progress: Callable[[], None] | None = None,
) -> list[str]:
    """Until every session is ready or failed; returns the names of those still starting.

    ``on_progress`` is called whenever more accounts have settled (and once at first).
    """
    settled = -1
    last_progress = time.monotonic()
    while True:
        current = list(sessions())
        pending = [s for s in current if not is_settled(s)]
        if not pending:
            return []
        if len(current) - len(pending) != settled:
            settled = len(current) - len(pending)
            last_progress = time.monotonic()
            if on_progress is not None:
                on_progress()
        left_s = last_progress + stall_s - time.monotonic()
        if left_s <= 0:
            return [s.name for s in pending]
        # the first pending account is the one most likely to be next (they start in order)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pending[0].ready.wait(), timeout=min(CHECK_S, left_s))

"""Settling an unknown outcome by asking the broker, never by resending.

A sent order without an answer (timeout, dropped link) may or may not have been executed.
The follower account is reconciled twice, a pause apart, so that a late order is seen too;
the second reconcile is retried until it succeeds, because planning the key again from a
view that may miss the copy is how an open gets duplicated.
"""

from __future__ import annotations

import asyncio

from cmamd.accounts.session import AccountSession
from cmamd.accounts.supervision import RetryPacing
from cmamd.logs import get_logger
from cmamd.replication.tuning import ReplicationTuning

log = get_logger("cmamd.replication")


async def settle(follower: AccountSession, tuning: ReplicationTuning) -> None:
    await reconcile(follower)
    await asyncio.sleep(tuning.settle_s)
    pacing = RetryPacing(first_s=tuning.settle_s, max_s=tuning.settle_retry_max_s)
    while not await reconcile(follower):
        await asyncio.sleep(pacing.next_delay())


async def reconcile(follower: AccountSession) -> bool:
    try:
        await follower.ready.wait()
        await follower.resync()
        return True
    except Exception as exc:
        log.warning("reconcile after unknown outcome failed", error=str(exc), account=follower.name)
        return False

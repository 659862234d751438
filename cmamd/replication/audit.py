"""The periodic light reconcile: orphans and missed copies found and repaired.

Events can be lost (a dropped account session the server did not announce, a gap while
reconnecting) and nothing else would notice until the next reconnect. Every
``audit_interval_s`` each ready account is reconciled (one ProtoOAReconcileReq each,
behind trades in priority, masters first so followers are compared with a fresh master); the
reconcile re-plans every key of the destinations it touches, and each key whose plan has
work to do, other than keys being worked on right now, is logged by name before it is
repaired. NautilusTrader's in-flight order audit is the model: a cheap periodic check,
not a second copy path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable

from cmamd.accounts.session import AccountSession
from cmamd.logs import get_logger
from cmamd.protocol.errors import OpenApiError
from cmamd.replication.intents import KeyPlan

log = get_logger("cmamd.audit")


def findings(plans: Iterable[KeyPlan], busy_keys: Collection[str]) -> list[KeyPlan]:
    """The plans that would send something, for keys nobody is working on."""
    return [plan for plan in plans if plan.intents and plan.key not in busy_keys]


def describe(plan: KeyPlan) -> list[str]:
    return [type(intent).__name__ for intent in plan.intents]


def log_findings(
    rule: str,
    follower: str,
    keys: Iterable[str],
    busy_keys: Collection[str],
    plan_of: Callable[[str], KeyPlan],
) -> int:
    """Log every key (not being worked on) whose plan has work: what the reconcile found."""
    found = findings((plan_of(key) for key in keys if key not in busy_keys), busy_keys)
    for plan in found:
        log.warning(
            "periodic reconcile repairing",
            rule=rule,
            follower=follower,
            master_item=plan.key,
            actions=describe(plan),
            notes=[note.reason for note in plan.notes],
        )
    return len(found)


async def reconcile_accounts(sessions: Iterable[AccountSession], masters: set[str]) -> int:
    """Reconcile every ready account, masters first; returns how many were reconciled."""
    done = 0
    for session in sorted(sessions, key=lambda s: (s.name not in masters, s.name)):
        if not session.ready.is_set():
            continue
        try:
            await session.resync()
            done += 1
        except OpenApiError as exc:
            if exc.session_lost:
                session.start_recovery(f"{exc.code} on the periodic reconcile")
            log.warning("periodic reconcile refused", account=session.name, code=exc.code)
        except Exception as exc:
            log.warning("periodic reconcile failed", account=session.name, error=str(exc))
    return done


async def audit_forever(
    interval_s: Callable[[], float], run_once: Callable[[], Awaitable[int]]
) -> None:
    """Run ``run_once`` every ``interval_s()`` seconds; a failing round is logged."""
    while True:
        await asyncio.sleep(interval_s())
        try:
            await run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic reconcile round failed")

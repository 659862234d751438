"""Which configured accounts are not ready, and why: for STATUS=, the log and READY.

READY=1 comes once every account is ready or has visibly failed; an account that is
still retrying (no connection yet, a transient refusal) is named here with its last
reason, so that neither the operator nor systemd is left guessing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Protocol

from cmamd.accounts.status import SessionStatus

STATUS_REASON_CHARS = 80
"""A reason in STATUS= is cut here: the whole line must stay readable in systemctl status."""


class SessionView(Protocol):
    status: SessionStatus
    error: str | None
    ready: asyncio.Event


def not_ready(
    configured: Iterable[str], sessions: Mapping[str, SessionView]
) -> list[tuple[str, str]]:
    """(account, reason) of every configured account that is not ready, by name."""
    result = []
    for name in sorted(configured):
        session = sessions.get(name)
        if session is None:
            result.append((name, "no session"))
        elif not session.ready.is_set():
            reason = session.error or session.status
            result.append((name, f"{session.status}: {reason}" if session.error else reason))
    return result


def status_suffix(accounts: list[tuple[str, str]], limit: int = 5) -> str:
    """``not ready: a (failed: ...), b (starting)`` for STATUS=, at most ``limit`` named."""
    if not accounts:
        return ""
    shown = [f"{name} ({_short(reason)})" for name, reason in accounts[:limit]]
    more = len(accounts) - limit
    return "not ready: " + ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _short(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) <= STATUS_REASON_CHARS:
        return reason
    return reason[: STATUS_REASON_CHARS - 1] + "…"

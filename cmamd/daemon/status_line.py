"""systemd's STATUS= line, from the facts the daemon gathers (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StatusFacts:
    accounts_ready: int
    accounts_total: int
    copies_done: int
    copies_rejected: int
    queue_depth: int
    equity_stopped: list[str] = field(default_factory=list)  # rule:follower
    needs_reauth: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)  # another cmamd copies onto them
    not_ready: str = ""  # account_status.status_suffix
    store_fault: str = ""
    extra: str = ""


def status_line(facts: StatusFacts) -> str:
    """Accounts up/total, copies done, queue depth, then whatever needs the operator."""
    parts = [
        f"accounts {facts.accounts_ready}/{facts.accounts_total} ready",
        f"copies {facts.copies_done} done, {facts.copies_rejected} rejected",
        f"queue {facts.queue_depth}",
    ]
    if facts.equity_stopped:
        parts.append(f"EQUITY STOP: {', '.join(facts.equity_stopped)}")
    if facts.needs_reauth:
        parts.append(f"NEEDS RE-AUTHORISATION (cmamd auth): {', '.join(facts.needs_reauth)}")
    if facts.frozen:
        parts.append(f"FROZEN, another cmamd copies onto: {', '.join(facts.frozen)}")
    if facts.not_ready:
        parts.append(facts.not_ready)
    if facts.store_fault:
        parts.append(f"STATE STORE FAULT: {facts.store_fault}")
    if facts.extra:
        parts.append(facts.extra)
    return "; ".join(parts)

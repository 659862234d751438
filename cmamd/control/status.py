"""``ctl status``: what the daemon knows, as one JSON document, and its text rendering."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from cmamd.replication.labels import parse_label

if TYPE_CHECKING:
    from cmamd.control.hub import OperatorHub

RATE_WINDOW_S = 1.0


def status_of(hub: OperatorHub) -> dict[str, Any]:
    daemon = hub.daemon
    config = daemon.config
    store = daemon.store
    destinations = hub.destinations()
    followers_of: dict[str, list[dict[str, Any]]] = {}
    rules: list[dict[str, Any]] = []
    for dest in destinations:
        effective = hub.overrides.effective(dest.target, dest.id, hub.yaml_mode(dest))
        skipped = Counter(
            link["reason"] or "skipped"
            for link in store.links(
                rule=dest.target.rule,
                master_id=dest.target.master_account_id,
                follower_id=dest.target.follower_account_id,
            )
            if link["status"] == "skipped"
        )
        entry = {
            "rule": dest.target.rule,
            "master": dest.master,
            "follower": dest.follower,
            "mode": effective.mode,
            "mode_source": effective.source,
            "skipped": sum(skipped.values()),
            "skipped_reasons": dict(skipped.most_common(10)),
            **hub.figures.of(dest.target.rule, dest.follower).as_dict(),
        }
        rules.append(entry)
        followers_of.setdefault(dest.follower, []).append(entry)
    accounts = []
    for account in config.accounts:
        session = daemon.sessions.get(account.name)
        tokens = store.get_tokens(account.account_id)
        state = session.state if session is not None else None
        trader = state.trader if state is not None else None
        copies = 0
        if state is not None:
            labels = [p.label for p in state.positions.values()]
            labels += [o.label for o in state.orders.values()]
            copies = sum(1 for label in labels if parse_label(label) is not None)
        ready = session is not None and session.ready.is_set()
        accounts.append(
            {
                "name": account.name,
                "account_id": account.account_id,
                "environment": account.environment,
                "enabled": account.enabled,
                "connected": bool(session is not None and session.connection.is_ready),
                "state": session.status if session is not None else "not started",
                "ready": ready,
                "reason": None if ready else _reason(account.enabled, session),
                "balance": str(trader.balance) if trader is not None else None,
                "equity": str(state.equity)
                if state is not None and state.equity is not None
                else None,
                "positions": len(state.positions) if state is not None else 0,
                "orders": len(state.orders) if state is not None else 0,
                "open_copies": copies,
                "modes": {
                    e["rule"]: {"mode": e["mode"], "source": e["mode_source"]}
                    for e in followers_of.get(account.name, [])
                },
                "token_expires_ms": tokens.expires_at_ms if tokens is not None else None,
                "last_error": session.error if session is not None else None,
            }
        )
    replicator = daemon.replicator
    return {
        "daemon": {"status": daemon.status_line(), "time_ms": daemon.now_ms()},
        "accounts": accounts,
        "destinations": rules,
        "queue": {
            "depth": replicator.queue.depth,
            "in_progress": replicator.queue.in_progress,
        },
        "connections": [connection_figures(c) for c in daemon.pool.connections],
        "recent_actions": hub.journal.recent(10),
    }


def _reason(enabled: bool, session: Any) -> str:
    if not enabled:
        return "disabled in the YAML"
    if session is None:
        return "no session (no connection could be made)"
    return str(session.error or session.status)


def connection_figures(connection: Any) -> dict[str, Any]:
    """A connection's rate-budget use: requests written in the last rolling second."""
    # The throttle keeps its send times privately; read them, never change them.
    throttle = getattr(connection, "_throttle", None)
    written = getattr(throttle, "_written", ())
    now = time.monotonic()
    used = sum(1 for t in written if now - t < RATE_WINDOW_S)
    stats = dict(connection.stats)
    return {
        "name": connection.name,
        "state": connection.state,
        "max_rps": getattr(throttle, "max_rps", None),
        "rate_used": used,
        "rate_waiting": getattr(throttle, "queued", 0),
        **{k: v for k, v in stats.items() if isinstance(v, int)},
    }


def render(status: dict[str, Any]) -> str:
    """The human view of ``status_of``'s document."""
    lines = [status["daemon"]["status"], "", "ACCOUNTS"]
    for a in status["accounts"]:
        state = "ready" if a["ready"] else f"NOT READY ({a['reason']})"
        money = f"balance {a['balance']} equity {a['equity']}" if a["balance"] else "no figures"
        expiry = a["token_expires_ms"]
        token = (
            f"token expires in {(expiry / 1000 - time.time()) / 3600:.0f} h"
            if expiry
            else "token expiry unknown"
        )
        lines.append(
            f"  {a['name']:<20} {a['environment']:<4} {state}; {money}; "
            f"{a['open_copies']} copies; {token}"
        )
        for rule, mode in a["modes"].items():
            lines.append(f"      {rule}: mode {mode['mode']} (from {mode['source']})")
        if a["last_error"]:
            lines.append(f"      last error: {a['last_error']}")
    lines += ["", "COPY RULES"]
    for d in status["destinations"]:
        latency = (
            f"latency last {d['last_latency_ms']} ms, median {d['median_latency_ms']} ms"
            if d["last_latency_ms"] is not None
            else "no copies yet"
        )
        lines.append(
            f"  {d['rule']}: {d['master']} -> {d['follower']}  mode {d['mode']} "
            f"({d['mode_source']}); {d['done']} done, {d['skipped']} skipped, "
            f"{d['rejected']} rejected; {latency}"
        )
        for reason, count in d["skipped_reasons"].items():
            lines.append(f"      skipped {count}x: {reason}")
        for code, count in d["rejected_codes"].items():
            lines.append(f"      rejected {count}x: {code}")
    queue = status["queue"]
    lines += ["", f"QUEUE  {queue['depth']} waiting, {queue['in_progress']} in progress"]
    for c in status["connections"]:
        lines.append(
            f"CONNECTION {c['name']}: {c['state']}; rate {c['rate_used']}/{c['max_rps']} "
            f"per s, {c['rate_waiting']} waiting"
        )
    if status.get("recent_actions"):
        lines += ["", "RECENT CONTROL ACTIONS"]
        for entry in status["recent_actions"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry["time_ms"] / 1000))
            args = json.dumps(entry["args"]) if entry["args"] else ""
            lines.append(
                f"  {when} uid {entry['uid']}: {entry['action']} {args} -> {entry['result']}"
            )
    return "\n".join(lines)

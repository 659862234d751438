"""What each control request does to the running daemon.

Every action validates its arguments (names against the running config) before touching
anything, changes persisted state first (the store's meta rows, via ``Overrides``), and
then hands the new destinations to the replicator, exactly as a reload or an equity stop
does: the planner alone decides what to send.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from cmamd.accounts.model import Side
from cmamd.accounts.status import RETRYABLE
from cmamd.config.models import AccountConfig
from cmamd.config.rules import CopyMode
from cmamd.control import manual
from cmamd.control.protocol import (
    ControlError,
    ErrorCode,
    Request,
    arg_bool,
    arg_names,
    arg_optional_str,
    arg_str,
)
from cmamd.control.status import status_of
from cmamd.replication.executor import CopyReport, CopyRoute
from cmamd.replication.labels import parse_label

if TYPE_CHECKING:
    from cmamd.accounts.session import AccountSession
    from cmamd.control.hub import OperatorHub

FLATTEN_WAIT_S = 30.0  # how long ``flatten`` waits for the closes before it reports
REDUCING_ACTIONS = frozenset({"ClosePosition", "CancelPendingOrder"})


async def run(hub: OperatorHub, request: Request) -> Any:
    handler = _HANDLERS[request.action]
    return await handler(hub, request.args)


# helpers --------------------------------------------------------------------------------
def _account(hub: OperatorHub, name: str) -> AccountConfig:
    config = hub.daemon.config
    try:
        return config.account(name)
    except KeyError:
        known = ", ".join(a.name for a in config.accounts)
        raise ControlError(
            ErrorCode.UNKNOWN_ACCOUNT, f"unknown account {name!r} (accounts: {known})"
        ) from None


def _rule_names(hub: OperatorHub) -> set[str]:
    return {rule.name for rule in hub.daemon.config.copy_rules}


def _ready_session(hub: OperatorHub, name: str) -> AccountSession:
    _account(hub, name)
    session = hub.daemon.sessions.get(name)
    if session is None or not session.ready.is_set():
        why = "not started" if session is None else (session.error or session.status)
        raise ControlError(ErrorCode.NOT_READY, f"account {name} is not ready: {why}")
    return session


def _follower_destinations(hub: OperatorHub, follower: str) -> list[CopyRoute]:
    return [d for d in hub.destinations() if d.follower == follower]


# actions --------------------------------------------------------------------------------
async def _status(hub: OperatorHub, args: dict[str, Any]) -> Any:
    return status_of(hub)


async def _pause(hub: OperatorHub, args: dict[str, Any], paused: bool = True) -> Any:
    target = arg_str(args, "target")
    kind = arg_optional_str(args, "kind")  # "follower" | "rule" | None: guess
    if kind not in (None, "follower", "rule"):
        raise ControlError(ErrorCode.BAD_REQUEST, f"kind is follower or rule, not {kind!r}")
    is_account = any(a.name == target for a in hub.daemon.config.accounts)
    is_rule = target in _rule_names(hub)
    if kind is None and is_account and is_rule:
        raise ControlError(
            ErrorCode.BAD_REQUEST, f"{target!r} is an account and a rule: say --follower/--rule"
        )
    if kind == "rule" or (kind is None and is_rule):
        if not is_rule:
            raise ControlError(ErrorCode.UNKNOWN_RULE, f"unknown rule {target!r}")
        hub.overrides.set_rule_paused(target, paused)
        hub.apply_destinations()
        return {"rule": target, "paused": paused}
    account = _account(hub, target)
    if not _follower_destinations(hub, target):
        raise ControlError(ErrorCode.REFUSED, f"{target} is not a follower of any enabled rule")
    hub.overrides.set_account_paused(account.account_id, paused)
    hub.apply_destinations()
    return {"follower": target, "paused": paused}


async def _resume(hub: OperatorHub, args: dict[str, Any]) -> Any:
    return await _pause(hub, args, paused=False)


async def _mode(hub: OperatorHub, args: dict[str, Any]) -> Any:
    follower = arg_str(args, "follower")
    raw_mode = arg_str(args, "mode")
    try:
        mode = CopyMode(raw_mode)
    except ValueError:
        raise ControlError(
            ErrorCode.BAD_REQUEST, f"mode is one of on, close_only, frozen (not {raw_mode!r})"
        ) from None
    account = _account(hub, follower)
    dests = _follower_destinations(hub, follower)
    if not dests:
        raise ControlError(ErrorCode.REFUSED, f"{follower} is not a follower of any enabled rule")
    hub.overrides.set_mode(account.account_id, mode, [d.id for d in dests])
    hub.apply_destinations()
    return {"follower": follower, "mode": mode.value}


async def _flatten(hub: OperatorHub, args: dict[str, Any]) -> Any:
    follower = arg_optional_str(args, "follower")
    rule = arg_optional_str(args, "rule")
    everything = arg_bool(args, "all")
    if sum((follower is not None, rule is not None, everything)) != 1:
        raise ControlError(ErrorCode.BAD_REQUEST, "give exactly one of follower, rule, all")
    wait_s = args.get("wait_s", FLATTEN_WAIT_S)
    if not isinstance(wait_s, int | float) or not 0 <= wait_s <= 600:
        raise ControlError(ErrorCode.BAD_REQUEST, "wait_s is a number of seconds, 0-600")
    if follower is not None:
        _account(hub, follower)
    if rule is not None and rule not in _rule_names(hub):
        raise ControlError(ErrorCode.UNKNOWN_RULE, f"unknown rule {rule!r}")
    chosen = [
        d
        for d in hub.destinations()
        if everything or d.follower == follower or d.target.rule == rule
    ]
    if not chosen:
        raise ControlError(ErrorCode.REFUSED, "no enabled destination matches")
    reports: list[CopyReport] = []
    ids = {(d.target.rule, d.follower) for d in chosen}

    def collect(report: CopyReport) -> None:
        if (report.rule, report.follower) in ids:
            reports.append(report)

    hub.report_listeners.append(collect)
    try:
        for dest in chosen:
            hub.overrides.set_flattened(dest.id)
        hub.apply_destinations()
        deadline = time.monotonic() + float(wait_s)
        while _copies_left(hub, chosen) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        hub.report_listeners.remove(collect)
    return {
        "destinations": [f"{d.target.rule}:{d.follower}" for d in chosen],
        "closed": [
            {"follower": r.follower, "action": r.summary}
            for r in reports
            if r.outcome == "done" and r.action in REDUCING_ACTIONS
        ],
        # an open already on its way when the flatten came (it is closed again at once)
        "opened": [
            {"follower": r.follower, "action": r.summary}
            for r in reports
            if r.outcome == "done" and r.action not in REDUCING_ACTIONS
        ],
        "failed": [
            {"follower": r.follower, "action": r.summary, "outcome": r.outcome, "code": r.detail}
            for r in reports
            if r.outcome != "done"
        ],
        "left": _copies_left(hub, chosen),
        "not_ready": sorted(
            {
                d.follower
                for d in chosen
                if (s := hub.daemon.sessions.get(d.follower)) is None or not s.ready.is_set()
            }
        ),
        "frozen": True,
    }


def _copies_left(hub: OperatorHub, chosen: list[CopyRoute]) -> dict[str, int]:
    """Copies (positions and pending orders) still held, per follower, for these masters."""
    left: dict[str, int] = {}
    for dest in chosen:
        session = hub.daemon.sessions.get(dest.follower)
        if session is None or not session.ready.is_set():
            continue
        labels = [p.label for p in session.state.positions.values()]
        labels += [o.label for o in session.state.orders.values()]
        count = 0
        for label in labels:
            parsed = parse_label(label)
            if parsed is not None and parsed[0] == dest.target.master_account_id:
                count += 1
        if count:
            left[dest.follower] = left.get(dest.follower, 0) + count
    return left


async def _reconcile(hub: OperatorHub, args: dict[str, Any]) -> Any:
    name = arg_optional_str(args, "account")
    if name is not None:
        sessions = [_ready_session(hub, name)]
    else:
        sessions = [s for s in hub.daemon.sessions.values() if s.ready.is_set()]
    outcomes = await asyncio.gather(*(s.resync() for s in sessions), return_exceptions=True)
    failed = {
        s.name: str(outcome) or type(outcome).__name__
        for s, outcome in zip(sessions, outcomes, strict=True)
        if isinstance(outcome, Exception)
    }
    if name is not None and failed:
        raise ControlError(ErrorCode.NOT_READY, f"reconcile of {name} failed: {failed[name]}")
    return {
        "reconciled": sorted(s.name for s in sessions if s.name not in failed),
        "failed": failed,
    }


async def _retry(hub: OperatorHub, args: dict[str, Any]) -> Any:
    name = arg_str(args, "account")
    account = _account(hub, name)
    if not account.enabled:
        raise ControlError(ErrorCode.REFUSED, f"account {name} is disabled in the YAML")
    session = hub.daemon.sessions.get(name)
    if session is not None and session.ready.is_set():
        raise ControlError(ErrorCode.REFUSED, f"account {name} is ready; nothing to retry")
    if session is not None and session.status not in RETRYABLE:
        # a session recovering on its own is not interrupted
        raise ControlError(
            ErrorCode.REFUSED, f"account {name} is {session.status}; see ctl status, retry later"
        )
    await hub.restart_account(account)
    session = hub.daemon.sessions.get(name)
    ready = session is not None and session.ready.is_set()
    return {
        "account": name,
        "ready": ready,
        "state": session.status if session is not None else "no session",
        "error": session.error if session is not None else None,
    }


def _members(hub: OperatorHub, args: dict[str, Any]) -> tuple[str, list[manual.Member]]:
    config = hub.daemon.config
    group_name = arg_optional_str(args, "group")
    names = arg_names(args, "accounts")
    if group_name is not None and names is None:
        group = next((g for g in config.groups if g.name == group_name), None)
        if group is None:
            known = ", ".join(g.name for g in config.groups) or "none configured"
            raise ControlError(
                ErrorCode.UNKNOWN_GROUP, f"unknown group {group_name!r} (groups: {known})"
            )
        members = manual.members_of_group(group)
    elif names is not None and group_name is None:
        members = manual.members_of_accounts(names)
    else:
        raise ControlError(ErrorCode.BAD_REQUEST, "give either accounts or group")
    for member in members:
        _ready_session(hub, member.account)
    return group_name or "accounts", members


def _optional_decimal(args: dict[str, Any], name: str) -> Decimal | None:
    return None if args.get(name) is None else _decimal(args, name)


def _decimal(args: dict[str, Any], name: str) -> Decimal:
    """A required number argument: positive, finite, at most a million."""
    value = args.get(name)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = Decimal(0)
    if not number.is_finite() or number <= 0 or number > 1_000_000:
        raise ControlError(ErrorCode.BAD_REQUEST, f"{name} is a positive number, not {value!r}")
    return number


async def _order(hub: OperatorHub, args: dict[str, Any]) -> Any:
    side_text = arg_str(args, "side")
    symbol = arg_str(args, "symbol")
    if side_text not in ("buy", "sell"):
        raise ControlError(ErrorCode.BAD_REQUEST, f"side is buy or sell, not {side_text!r}")
    lots = _decimal(args, "lots")
    sl, tp = _optional_decimal(args, "sl_pips"), _optional_decimal(args, "tp_pips")
    scope, members = _members(hub, args)
    states = {m.account: hub.daemon.sessions[m.account].state for m in members}
    planned = manual.plan_orders(members, states, symbol, lots, sl, tp)
    ref = manual.new_ref()
    label = manual.manual_label(scope, ref)
    results = await manual.send_all(
        [
            manual.send_order(
                hub.daemon.sessions[order.account],
                order,
                Side.BUY if side_text == "buy" else Side.SELL,
                label,
                f"ctl-{ref}-{index}",
            )
            for index, order in enumerate(planned, 1)
        ]
    )
    hub.log_trades("order", results, label=label)
    return {"label": label, "results": results}


async def _close(hub: OperatorHub, args: dict[str, Any]) -> Any:
    symbol = arg_optional_str(args, "symbol")
    _, members = _members(hub, args)
    states = {m.account: hub.daemon.sessions[m.account].state for m in members}
    closes = manual.plan_closes(members, states, symbol)
    results = await manual.send_all(
        [manual.send_close(hub.daemon.sessions[c.account], c) for c in closes]
    )
    hub.log_trades("close", results)
    return {"results": results}


_HANDLERS = {
    "status": _status,
    "pause": _pause,
    "resume": _resume,
    "mode": _mode,
    "flatten": _flatten,
    "reconcile": _reconcile,
    "retry": _retry,
    "order": _order,
    "close": _close,
}

"""``cmamd ctl``: operate a running daemon through its control socket.

Exit status: 0 done; 1 refused or failed (the message says why); 2 bad usage;
3 the daemon is not running; 77 permission denied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from cmamd.config.default_path import DEFAULT_CONFIG
from cmamd.control.client import EXIT_NO_PERMISSION, ClientError, ControlClient
from cmamd.control.status import render

DEFAULT_SOCKET = Path("/run/cmamd/control.sock")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", type=Path, help=f"control socket (default: {DEFAULT_SOCKET})")
    parser.add_argument(
        "--config", type=Path, help="find the socket from this config's control.socket"
    )
    parser.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = sub.add_parser("status", help="accounts, rules, queue and connections")
    status.add_argument("--json", action="store_true", dest="json_status")
    helps = {
        "pause": "stop opening copies for a follower or a rule (closes still follow)",
        "resume": "undo a pause of a follower or a rule",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("target", metavar="FOLLOWER|RULE")
        kind = p.add_mutually_exclusive_group()
        kind.add_argument("--follower", action="store_const", const="follower", dest="kind")
        kind.add_argument("--rule", action="store_const", const="rule", dest="kind")
    mode = sub.add_parser("mode", help="set a follower's mode (kept across restarts)")
    mode.add_argument("follower")
    mode.add_argument("mode", choices=["on", "close_only", "frozen"])
    flatten = sub.add_parser("flatten", help="close every copy, cancel pending copies, freeze")
    which = flatten.add_mutually_exclusive_group(required=True)
    which.add_argument("--follower")
    which.add_argument("--rule")
    which.add_argument("--all", action="store_true")
    flatten.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    flatten.add_argument("--wait", type=float, default=30.0, help="seconds to wait for closes")
    reconcile = sub.add_parser("reconcile", help="reconcile accounts with the broker now")
    reconcile.add_argument("account", nargs="?")
    retry = sub.add_parser("retry", help="restart a failed account's session")
    retry.add_argument("account")
    order = sub.add_parser("order", help="place one market order on many accounts")
    _add_members(order)
    order.add_argument("side", choices=["buy", "sell"])
    order.add_argument("symbol")
    order.add_argument("lots")
    order.add_argument("--sl", metavar="PIPS", help="stop loss distance in pips")
    order.add_argument("--tp", metavar="PIPS", help="take profit distance in pips")
    close = sub.add_parser("close", help="close what `ctl order` opened on these accounts")
    _add_members(close)
    close.add_argument("symbol", nargs="?")


def _add_members(parser: argparse.ArgumentParser) -> None:
    members = parser.add_mutually_exclusive_group(required=True)
    members.add_argument("--accounts", help="comma-separated account names")
    members.add_argument("--group", help="a group from the YAML's groups:")


def socket_from(args: argparse.Namespace, environ: dict[str, str]) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    if environ.get("CMAMD_CONTROL_SOCKET"):
        return Path(environ["CMAMD_CONTROL_SOCKET"])
    config = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if config is not None:
        found = _socket_in_config(Path(config))
        if found is not None:
            return found
    return DEFAULT_SOCKET


def _socket_in_config(path: Path) -> Path | None:
    """Only ``control.socket`` is read: an operator may not be able to read the secrets
    the full config names, and needs none of them."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    control = data.get("control") if isinstance(data, dict) else None
    value = control.get("socket") if isinstance(control, dict) else None
    if not isinstance(value, str):
        return None
    socket_path = Path(value)
    return socket_path if socket_path.is_absolute() else path.parent / socket_path


def request_of(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    action: str = args.action
    if action in ("pause", "resume"):
        return action, {"target": args.target, **({"kind": args.kind} if args.kind else {})}
    if action == "mode":
        return action, {"follower": args.follower, "mode": args.mode}
    if action == "flatten":
        chosen = (
            {"all": True}
            if args.all
            else {"follower": args.follower}
            if args.follower
            else {"rule": args.rule}
        )
        return action, {**chosen, "wait_s": args.wait}
    if action in ("reconcile", "retry"):
        return action, {"account": args.account} if args.account else {}
    if action in ("order", "close"):
        members: dict[str, Any] = (
            {"group": args.group}
            if args.group
            else {"accounts": [a.strip() for a in args.accounts.split(",") if a.strip()]}
        )
        if action == "close":
            return action, {**members, **({"symbol": args.symbol} if args.symbol else {})}
        extra = {"sl_pips": args.sl, "tp_pips": args.tp}
        return action, {
            **members,
            "side": args.side,
            "symbol": args.symbol,
            "lots": args.lots,
            **{k: v for k, v in extra.items() if v is not None},
        }
    return action, {}


def confirmed(args: argparse.Namespace, stdin: TextIO, stderr: TextIO) -> bool:
    if args.action != "flatten" or args.yes:
        return True
    what = "EVERY follower" if args.all else (args.follower or f"rule {args.rule}")
    if not stdin.isatty():
        print("flatten: not on a terminal; add --yes to confirm", file=stderr)
        return False
    stderr.write(
        f"Close every copy and cancel every pending copy on {what}, then freeze? [type yes] "
    )
    stderr.flush()
    return stdin.readline().strip().lower() == "yes"


def main(args: argparse.Namespace) -> int:
    return run(args, os.environ.copy(), sys.stdin, sys.stdout, sys.stderr)


def run(
    args: argparse.Namespace,
    environ: dict[str, str],
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    if not confirmed(args, stdin, stderr):
        print("not confirmed; nothing done", file=stderr)
        return 1
    action, payload = request_of(args)
    # retry waits for an account start (up to 120 s), flatten for its closes
    timeout_s = max(300.0, getattr(args, "wait", 0) + 60)
    client = ControlClient(socket_from(args, environ), timeout_s=timeout_s)
    try:
        reply = client.call(action, payload)
    except ClientError as exc:
        print(f"cmamd ctl: {exc}", file=stderr)
        return exc.exit_code
    if not reply.ok:
        print(f"cmamd ctl {action}: {reply.message} [{reply.code}]", file=stderr)
        return EXIT_NO_PERMISSION if reply.code == "permission_denied" else 1
    as_json = args.json or getattr(args, "json_status", False)
    stdout.write(
        json.dumps(reply.result, indent=2) + "\n" if as_json else describe(action, reply.result)
    )
    return 1 if _partial_failure(action, reply.result) else 0


def _partial_failure(action: str, result: Any) -> bool:
    if action in ("order", "close"):
        return any(r.get("outcome") != "done" for r in result.get("results", []))
    if action == "flatten":
        return bool(result.get("failed") or result.get("left") or result.get("not_ready"))
    if action == "reconcile":
        return bool(result.get("failed"))
    return False


def describe(action: str, result: Any) -> str:
    """One screenful for a person; ``--json`` gives the full answer."""
    if action == "status":
        return render(result) + "\n"
    if action in ("pause", "resume"):
        target = result.get("follower") or f"rule {result.get('rule')}"
        return f"{target}: {'paused' if result['paused'] else 'resumed'}\n"
    if action == "mode":
        return f"{result['follower']}: mode {result['mode']}\n"
    if action == "flatten":
        lines = [f"flattened and frozen: {', '.join(result['destinations'])}"]
        lines += [f"  closed  {c['follower']}: {c['action']}" for c in result["closed"]]
        lines += [
            f"  opened  {o['follower']}: {o['action']} (was on its way; closed again)"
            for o in result.get("opened", [])
        ]
        lines += [
            f"  FAILED  {f['follower']}: {f['action']} ({f['outcome']} {f['code']})"
            for f in result["failed"]
        ]
        lines += [f"  LEFT    {name}: {n} copies still open" for name, n in result["left"].items()]
        lines += [f"  NOT READY {name}: closes follow once it is" for name in result["not_ready"]]
        return "\n".join(lines) + "\n"
    if action == "reconcile":
        lines = [f"reconciled: {', '.join(result['reconciled']) or 'no ready account'}"]
        lines += [f"  FAILED {name}: {error}" for name, error in result["failed"].items()]
        return "\n".join(lines) + "\n"
    if action == "retry":
        state = "ready" if result["ready"] else f"{result['state']} ({result['error']})"
        return f"{result['account']}: {state}\n"
    if action in ("order", "close"):
        lines = [f"label {result['label']}"] if "label" in result else []
        for r in result["results"]:
            what = (
                f"{r['symbol']} {r.get('lots', '')} lots"
                if action == "order"
                else f"{r['symbol']} position {r['position_id']}"
            )
            detail = f" ({r['detail']})" if r.get("detail") else ""
            lines.append(f"  {r['account']:<20} {r['outcome']:<8} {what}{detail}")
        if not result["results"]:
            lines.append("  nothing to do")
        return "\n".join(lines) + "\n"
    return json.dumps(result) + "\n"

"""House rules read off the source with ``ast``: log calls and runtime checks.

Pure functions over source text, so that each rule is tested on small snippets (does it see
the bad form, does it let the good one pass) and then applied to every module of cmamd/.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import cmamd

LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "msg"})

# A field name that says the same thing as a canonical one (COMMON.md, issue 12). The
# canonical name is the value, so a failure says what to write instead.
FIELD_SYNONYMS: dict[str, str] = {
    "acct": "account",
    "account_name": "account",
    "accountname": "account",
    "follower_name": "follower",
    "master_name": "master",
    "accountid": "account_id",
    "ctid": "account_id",
    "ctid_trader_account_id": "account_id",
    "ctidtraderaccountid": "account_id",
    "conn": "connection",
    "conn_id": "connection",
    "connection_id": "connection",
    "key": "master_item",
    "item_key": "master_item",
    "symbol_name": "symbol",
    "pos_id": "position_id",
    "positionid": "position_id",
    "orderid": "order_id",
    "clientorderid": "client_order_id",
    "cl_ord_id": "client_order_id",
    "error_code": "code",
    "errorcode": "code",
    "err": "error",
    "exc": "error",
    "exception": "error",
    "delay": "in_s",
    "delay_s": "in_s",
    "wait_s": "in_s",
    "retry_in": "in_s",
    "retry_in_s": "in_s",
    "rule_name": "rule",
    "why": "reason",
    "lot": "lots",
    "cents": "volume",
}

# Values in an event: a number, a format placeholder, or "what: detail" / "what; then what".
_VALUE_IN_EVENT = re.compile(r"[0-9%{}:;=]")
MAX_EVENT_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    problem: str


def _is_logger(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return isinstance(name, str) and (name in ("log", "logger") or name.endswith("_log"))


def log_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls such as ``log.info(...)``, ``self._log.warning(...)``, ``log.bind(...).error(...)``
    and ``log_method(...)`` (a level chosen first: ``log_method = log.info if ok else ...``)."""
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id.endswith("log_method"):
            calls.append(node)
            continue
        if not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr not in LOG_METHODS:
            continue
        receiver = node.func.value
        while isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute):
            receiver = receiver.func.value  # log.bind(...).info
        if _is_logger(receiver):
            calls.append(node)
    return calls


def event_problem(event: str) -> str | None:
    if _VALUE_IN_EVENT.search(event):
        return f"event {event!r} carries values or a detail (put them in fields)"
    if len(event) > MAX_EVENT_LENGTH:
        return f"event {event!r} is a sentence (name what happened; the rest goes in fields)"
    if event != event.strip() or not event:
        return f"event {event!r} is blank or padded"
    return None


def _synonym_findings(call: ast.Call) -> list[Finding]:
    found = []
    for keyword in call.keywords:
        if keyword.arg is None or keyword.arg == "event":
            continue
        canonical = FIELD_SYNONYMS.get(keyword.arg.lower())
        if canonical is not None:
            found.append(Finding(call.lineno, f"field {keyword.arg!r}: write {canonical!r}"))
    return found


_BINDERS = frozenset({"bind", "bind_contextvars"})


def context_binds(tree: ast.AST) -> list[ast.Call]:
    """Calls that add fields to every later line: ``log.bind(...)``, ``bind_contextvars(...)``."""
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr in _BINDERS)
            or (isinstance(node.func, ast.Name) and node.func.id in _BINDERS)
        )
    ]


def event_tables(tree: ast.Module) -> dict[str, list[str]]:
    """Module constants that hold nothing but string literals (``EVENTS = {Outcome.DONE:
    "copy done", ...}``, ``READY = "account ready"``): an event may be taken from one."""
    tables: dict[str, list[str]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        if isinstance(value, ast.Dict):
            members: list[ast.expr] = list(value.values)
        elif isinstance(value, ast.Tuple | ast.List | ast.Set):
            members = list(value.elts)
        else:
            members = [value]
        texts = [
            m.value for m in members if isinstance(m, ast.Constant) and isinstance(m.value, str)
        ]
        if members and len(texts) == len(members):
            tables[target.id] = texts
    return tables


def _events_of(node: ast.expr | None, tables: dict[str, list[str]]) -> list[str] | None:
    """The texts an event expression can take, or None when it is not fixed in the source."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Subscript):
        node = node.value  # EVENTS[outcome]: any of the table's texts
    if isinstance(node, ast.Name) and node.id in tables:
        return tables[node.id]
    return None


def log_findings(source: str) -> list[Finding]:
    tree = ast.parse(source)
    tables = event_tables(tree)
    found = [finding for call in context_binds(tree) for finding in _synonym_findings(call)]
    for call in log_calls(tree):
        event_node = call.args[0] if call.args else None
        for keyword in call.keywords:
            if keyword.arg == "event":
                event_node = keyword.value
        events = _events_of(event_node, tables)
        if events is None:
            found.append(Finding(call.lineno, "event is not a plain string literal"))
        else:
            found += [
                Finding(call.lineno, problem)
                for problem in map(event_problem, events)
                if problem is not None
            ]
        names = {keyword.arg for keyword in call.keywords}
        if "volume" in names and "lots" not in names:
            found.append(Finding(call.lineno, "field 'volume' without 'lots'"))
        found += _synonym_findings(call)
    return found


def assert_findings(source: str) -> list[Finding]:
    """``assert`` statements: python -O strips them, so they check nothing in production."""
    return [
        Finding(node.lineno, "assert statement (stripped by python -O)")
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assert)
    ]


def cast_findings(source: str) -> list[Finding]:
    """``cast(...)`` calls: a cast checks nothing; a reply is checked with expect_reply."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "cast":
                found.append(Finding(node.lineno, "cast (checks nothing at run time)"))
    return found


def package_modules() -> dict[str, str]:
    """Source of every hand-written module of cmamd/, by path relative to the repository."""
    root = Path(cmamd.__file__).parent
    return {
        str(path.relative_to(root.parent)): path.read_text()
        for path in sorted(root.rglob("*.py"))
        if not path.name.endswith("_pb2.py")
    }

"""The control protocol: JSON lines over a unix stream socket, one request per line.

Version 1. A client sends one JSON object per line::

    {"v": 1, "id": 7, "action": "pause", "args": {"target": "follower1"}}

and the daemon answers each with one line, in order::

    {"v": 1, "id": 7, "ok": true, "result": {...}}
    {"v": 1, "id": 7, "ok": false, "error": {"code": "unknown_account", "message": "..."}}

``id`` is the client's own (any JSON scalar, echoed). A request with another ``v`` is
answered with ``unsupported_version`` and the versions spoken, so an old client meets a
newer daemon with a clear error instead of a misunderstanding. Error codes are stable:
see ``ErrorCode``. A line longer than ``MAX_LINE`` closes the connection. Every action,
its arguments and its result: docs/control.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

VERSION = 1
MAX_LINE = 64 * 1024

ACTIONS = frozenset(
    {
        "status",
        "pause",
        "resume",
        "mode",
        "flatten",
        "reconcile",
        "retry",
        "order",
        "close",
    }
)


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # not JSON, not an object, missing or wrong fields
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_ACTION = "unknown_action"
    PERMISSION_DENIED = "permission_denied"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_RULE = "unknown_rule"
    UNKNOWN_GROUP = "unknown_group"
    NOT_READY = "not_ready"  # the account exists but cannot act now (failed, starting)
    REFUSED = "refused"  # valid, but not applicable (e.g. retry on a healthy account)
    INTERNAL = "internal"


class ControlError(Exception):
    """An action's refusal, sent to the client as ``error``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    id: Any = None


def encode_request(request: Request) -> bytes:
    body = {"v": VERSION, "id": request.id, "action": request.action, "args": request.args}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Parse and validate one request line; raises ControlError saying what is wrong."""
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(ErrorCode.BAD_REQUEST, f"not a JSON line: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(ErrorCode.BAD_REQUEST, "a request is a JSON object")
    version = data.get("v")
    if version != VERSION:
        raise ControlError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not spoken here; this daemon speaks {VERSION}",
        )
    action = data.get("action")
    if not isinstance(action, str):
        raise ControlError(ErrorCode.BAD_REQUEST, "missing 'action' (a string)")
    if action not in ACTIONS:
        raise ControlError(ErrorCode.UNKNOWN_ACTION, f"unknown action {action!r}")
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise ControlError(ErrorCode.BAD_REQUEST, "'args' is a JSON object")
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str | int):
        raise ControlError(ErrorCode.BAD_REQUEST, "'id' is a string or an integer")
    return Request(action, args, request_id)


def encode_result(request_id: Any, result: Any) -> bytes:
    body = {"v": VERSION, "id": request_id, "ok": True, "result": result}
    return json.dumps(body, separators=(",", ":"), default=str).encode() + b"\n"


def encode_error(request_id: Any, code: ErrorCode, message: str) -> bytes:
    body = {
        "v": VERSION,
        "id": request_id,
        "ok": False,
        "error": {"code": code.value, "message": message},
    }
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    result: Any = None
    code: str = ""
    message: str = ""


def decode_reply(line: bytes) -> Reply:
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the daemon sent a line that is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != VERSION or "ok" not in data:
        raise ValueError("the daemon's reply is not a version-1 control reply")
    if data["ok"]:
        return Reply(True, data.get("result"))
    error = data.get("error") or {}
    return Reply(False, None, str(error.get("code", "")), str(error.get("message", "")))


# argument helpers: every action validates its args through these ------------------------
def arg_str(args: dict[str, Any], name: str) -> str:
    """A required string argument."""
    value = arg_optional_str(args, name)
    if value is None:
        raise ControlError(ErrorCode.BAD_REQUEST, f"missing argument {name!r}")
    return value


def arg_optional_str(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ControlError(ErrorCode.BAD_REQUEST, f"argument {name!r} is a non-empty string")
    return value


def arg_names(args: dict[str, Any], name: str) -> list[str] | None:
    value = args.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > 1000
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise ControlError(ErrorCode.BAD_REQUEST, f"argument {name!r} is a list of names")
    return list(dict.fromkeys(value))


def arg_bool(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise ControlError(ErrorCode.BAD_REQUEST, f"argument {name!r} is true or false")
    return value

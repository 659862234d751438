"""Where code deep in the daemon raises an alert without being handed the dispatcher:
``emit("foreign_copier", "…", {"account": …})``. The running daemon's OperatorHub
registers itself as the receiver at start and withdraws at stop; with no receiver (unit
tests, tools) an alert is only logged. ``emit`` never blocks and never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cmamd.logs import get_logger

log = get_logger("cmamd.alerts")

# Keys an alert's details may not take on its log line: the line's own header and fields.
_LINE_KEYS = frozenset({"event", "level", "logger", "timestamp", "cause", "text", "receiver"})


def alert_line_fields(cause: str, text: str, details: dict[str, Any]) -> dict[str, Any]:
    """The fields of an alert's log line: its details under their own names (``account``,
    ``follower``, ``master_item``... as on every other line), ``detail_<key>`` for a detail
    named like one of the line's own keys."""
    fields: dict[str, Any] = {"cause": cause, "text": text}
    for key, value in details.items():
        fields[f"detail_{key}" if key in _LINE_KEYS else key] = value
    return fields


Receiver = Callable[[str, str, dict[str, Any]], None]
_receiver: Receiver | None = None


def set_receiver(receiver: Receiver | None) -> None:
    global _receiver
    _receiver = receiver


def emit(cause: str, text: str, details: dict[str, Any] | None = None) -> None:
    receiver = _receiver
    if receiver is None:
        log.warning("alert", **alert_line_fields(cause, text, details or {}), receiver=None)
        return
    try:
        receiver(cause, text, details or {})
    except Exception:
        log.exception("alert not passed on", cause=cause)

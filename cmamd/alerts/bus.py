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

Receiver = Callable[[str, str, dict[str, Any]], None]
_receiver: Receiver | None = None


def set_receiver(receiver: Receiver | None) -> None:
    global _receiver
    _receiver = receiver


def emit(cause: str, text: str, details: dict[str, Any] | None = None) -> None:
    receiver = _receiver
    if receiver is None:
        log.warning("alert", cause=cause, text=text, receiver=None)
        return
    try:
        receiver(cause, text, details or {})
    except Exception:
        log.exception("alert not passed on", cause=cause)

"""Where our log lines go: one handler for library records and our rendered lines, and
the structlog wrapper and sink that skip the stdlib round trip when nothing else listens.

``cmamd.logs.configure_logging`` fills ``output``; every logger, cached or not, reads it at
each call, so a reconfiguration (SIGHUP) reaches them all.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one output: library records through ``emit``, our rendered lines through
    ``write_line``, both under the handler's lock so lines never interleave."""

    def write_line(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(line + "\n")
                self.stream.flush()  # one line at a time to journald, as emit() does
            except (OSError, ValueError) as exc:  # a closed or broken stdout
                _report_write_failure(exc)


def _report_write_failure(exc: Exception) -> None:
    # What logging.Handler.handleError does for a library record: say so on stderr, go on.
    if logging.raiseExceptions and sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"--- Logging error: {exc!r}\n")


class Output:
    """What every cached logger reads at each call, so a reconfiguration reaches them."""

    def __init__(self) -> None:
        self.handler: LineHandler | None = None
        self.threshold = logging.DEBUG
        self.final: list[Processor] = []  # the processors after the shared ones (route)


output = Output()


def route(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """Last processor of our chain: when our handler is the root logger's only one (the
    daemon), render here and let the sink write the line; otherwise (pytest's caplog, a
    handler someone added) hand the event dict to the stdlib as before, so every handler
    gets the record and ours renders it through the same final processors."""
    handlers = logging.root.handlers
    if len(handlers) == 1 and handlers[0] is output.handler:
        rendered: Any = event_dict
        for processor in output.final:
            rendered = processor(logger, method_name, rendered)
        return rendered
    return structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method_name, event_dict)


class Sink:
    """The logger our structlog loggers wrap: a rendered line goes to the one output, an
    event dict for the stdlib (see ``route``) to the stdlib logger of the same name."""

    __slots__ = ("_stdlib", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib = logging.getLogger(name)

    def _emit(self, method_name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        if len(args) == 1 and not kw and isinstance(args[0], str):
            handler = output.handler
            if handler is not None:
                handler.write_line(args[0])
        else:
            getattr(self._stdlib, method_name)(*args, **kw)

    def debug(self, *args: Any, **kw: Any) -> None:
        self._emit("debug", args, kw)

    def info(self, *args: Any, **kw: Any) -> None:
        self._emit("info", args, kw)

    def warning(self, *args: Any, **kw: Any) -> None:
        self._emit("warning", args, kw)

    def error(self, *args: Any, **kw: Any) -> None:
        self._emit("error", args, kw)

    def exception(self, *args: Any, **kw: Any) -> None:
        self._emit("exception", args, kw)

    def critical(self, *args: Any, **kw: Any) -> None:
        self._emit("critical", args, kw)


def sink_factory(*args: Any) -> Sink:
    return Sink(str(args[0]) if args else "cmamd")


def _ours(processors: Iterable[Processor]) -> bool:
    # While a test's capture_logs has put its own processor last, the level is not ours.
    return isinstance(processors, list) and bool(processors) and processors[-1] is route


class CmamdLogger(structlog.stdlib.BoundLogger):
    """``structlog.stdlib.BoundLogger`` without the stdlib round trip for our own lines,
    and the level checked first: a filtered line builds nothing. Under another chain
    (``capture_logs``) nothing is filtered, as when the filter was a processor."""

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if output.threshold > logging.DEBUG and _ours(self._processors):
            return None
        return self._proxy_to_logger("debug", event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if output.threshold > logging.INFO and _ours(self._processors):
            return None
        return self._proxy_to_logger("info", event, *args, **kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if output.threshold > logging.WARNING and _ours(self._processors):
            return None
        return self._proxy_to_logger("warning", event, *args, **kw)

    def error(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if output.threshold > logging.ERROR and _ours(self._processors):
            return None
        return self._proxy_to_logger("error", event, *args, **kw)

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if output.threshold > logging.ERROR and _ours(self._processors):
            return None
        kw.setdefault("exc_info", True)
        return self._proxy_to_logger("exception", event, *args, **kw)

    def critical(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._proxy_to_logger("critical", event, *args, **kw)

    def isEnabledFor(self, level: int) -> bool:
        return level >= output.threshold

"""Logging: structlog for our code, stdlib ``logging`` for libraries, one pipeline for both.

Under systemd, stdout goes to journald, so the daemon writes one JSON object per line there
(``timestamp``, ``level``, ``event``, ``logger`` plus bound context); on a terminal it
writes human-readable lines instead. Every record, ours or a library's, passes the secret
redaction processors last before rendering: OAuth tokens and the client secret must never
reach the journal, which is readable by more people than the state directory is.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import quote

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "***"
# Shorter values would be replaced inside ordinary words and numbers all over the log.
MIN_SECRET_LENGTH = 6
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("auto", "json", "console")

# Fields whose value is a credential whatever it contains; compared after lower-casing and
# dropping "_"/"-", so client_secret, clientSecret, refresh-token, new_access_token... match.
_SECRET_FIELD_SUFFIXES = ("token", "secret", "password")
_MAX_DEPTH = 12
_HANDLER_NAME = "cmamd"
# Libraries whose INFO/DEBUG chatter (every frame, every keepalive) drowns the daemon's own
# lines: kept at WARNING unless the whole daemon runs at debug.
_CHATTY_LIBRARIES = ("websockets",)


def is_secret_field(name: str) -> bool:
    normalized = name.lower().replace("_", "").replace("-", "")
    return normalized.endswith(_SECRET_FIELD_SUFFIXES)


def redact_secret_fields(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Processor: blank the value of every field named like a credential, at any depth."""
    return _redact_field_map(event_dict, 0)


def _redact_field_map(value: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
    return {
        key: (
            REDACTED
            if isinstance(key, str) and is_secret_field(key) and _is_filled(item)
            else _redact_fields(item, depth + 1)
        )
        for key, item in value.items()
    }


def _redact_fields(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return _redact_field_map(value, depth)
    if isinstance(value, list | tuple):
        items = [_redact_fields(item, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _is_filled(value: Any) -> bool:
    # None, "" and flags (has_token=False) say whether a credential exists, not what it is.
    return value is not None and value != "" and not isinstance(value, bool)


class SecretRedactor:
    """Processor replacing known secret values by ``***`` wherever they occur.

    Values are searched inside every string of the event dict (the message, context values,
    nested dicts and lists, the rendered exception text) and inside the ``repr`` of other
    objects, which is what the renderers would print. Run it after ``format_exc_info`` so
    tracebacks are text by then.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.register(secret)

    def register(self, secret: str) -> bool:
        """Add a value to hide; False (and ignored) when too short to redact safely."""
        if len(secret) < MIN_SECRET_LENGTH:
            return False
        # Tokens also travel URL-encoded (the token endpoint takes them as query parameters).
        variants = {secret, quote(secret, safe="")}
        if variants <= self._secrets:
            return True
        self._secrets |= variants
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
        return True

    def clear(self) -> None:
        self._secrets.clear()
        self._pattern = None

    def redact_text(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        pattern = self._pattern
        if pattern is None:
            return event_dict
        return _redact_value_map(event_dict, pattern, 0)


def _redact_values(value: Any, pattern: re.Pattern[str], depth: int) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth <= _MAX_DEPTH:
        if isinstance(value, Mapping):
            return _redact_value_map(value, pattern, depth)
        if isinstance(value, list | tuple | set | frozenset):
            items = [_redact_values(item, pattern, depth + 1) for item in value]
            return tuple(items) if isinstance(value, tuple) else items
    # Anything else is rendered through repr (JSON fallback and console alike): if that
    # text would show a secret, log the redacted text instead of the object.
    text = repr(value)
    return pattern.sub(REDACTED, text) if pattern.search(text) else value


def _redact_value_map(
    value: Mapping[Any, Any], pattern: re.Pattern[str], depth: int
) -> dict[Any, Any]:
    return {
        _redact_values(key, pattern, depth + 1): _redact_values(item, pattern, depth + 1)
        for key, item in value.items()
    }


# One registry for the process: tokens rotate at runtime and every logger must hide the
# new ones at once, whatever configure_logging call created its pipeline.
_redactor = SecretRedactor()


def register_secret(value: str) -> bool:
    """Hide ``value`` from every log line from now on (False when shorter than 6 chars)."""
    return _redactor.register(value)


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: the process-wide :class:`SecretRedactor`."""
    return _redactor(logger, method_name, event_dict)


def _shared_processors() -> list[Processor]:
    """Context and metadata, added to our events and to library records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderer(fmt: str, stream: TextIO) -> Processor:
    if fmt == "auto":
        fmt = "console" if _is_tty(stream) else "json"
    if fmt == "console":
        # format_exc_info already turned any traceback into redacted text; the plain
        # formatter also keeps rich's locals display (tokens in locals) out of the picture.
        return structlog.dev.ConsoleRenderer(
            colors=_is_tty(stream), exception_formatter=structlog.dev.plain_traceback
        )
    return _json_renderer


_HEADER_KEYS = ("timestamp", "level", "logger", "event")
_json_dumps = structlog.processors.JSONRenderer()


def _json_renderer(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    # The fixed keys first, so `journalctl -o cat` lines line up for a human reader too.
    ordered = {key: event_dict[key] for key in _HEADER_KEYS if key in event_dict}
    ordered.update(event_dict)
    rendered = _json_dumps(logger, method_name, ordered)
    # JSONRenderer returns bytes only with a bytes-returning serializer, which it is not given.
    return rendered if isinstance(rendered, str) else rendered.decode()


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Set up (or, on SIGHUP, re-set) the whole logging pipeline.

    ``fmt`` is "json", "console" or "auto" (console on a TTY, JSON otherwise). Secrets are
    added to the process-wide registry, which a reconfiguration never empties.
    """
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    stream = sys.stdout if stream is None else stream
    for secret in secrets:
        register_secret(secret)

    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secret_fields,
            redact_secrets,
            _renderer(fmt, stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "debug" else logging.WARNING)

    structlog.configure(
        processors=[
            # Level checks ask stdlib, so a reconfiguration applies to existing loggers too.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # A logger cached before a reconfiguration would keep the old processor chain.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    # structlog.get_logger is untyped; configure_logging sets wrapper_class to BoundLogger.
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger

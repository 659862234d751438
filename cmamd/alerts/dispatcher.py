"""Alerts off the copy path: ``alert()`` returns at once; each sink drains its own bounded
queue in its own task, retrying with backoff, so a sink that hangs or fails delays neither
the copies nor the other sinks.

The same cause about the same subject (an account, a destination) is sent at most once per
``repeat_after_s``; repeats in between are counted and mentioned in the next one. Every
alert is logged whether or not a sink takes it; a failed delivery is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cmamd.alerts.bus import alert_line_fields
from cmamd.alerts.sinks import Command, Sink, SinkError, TelegramBot, Webhook
from cmamd.config.operating import AlertsConfig
from cmamd.logs import get_logger

log = get_logger("cmamd.alerts")

QUEUE_SIZE = 100  # per sink; beyond it new alerts are dropped (and logged)
ATTEMPTS = 4
STOP_FLUSH_S = 3.0  # on shutdown, how long the sinks may take to send what is queued


@dataclass
class RateGate:
    """Per (cause, subject): one per ``interval_s``; per cause: at most ``per_cause`` per
    ``interval_s`` whatever the subjects (a broker refusing every copy must not send one
    message per trade). What is held back is counted into the next one let through."""

    interval_s: float
    clock: Callable[[], float] = time.monotonic
    per_cause: int = 10
    _last: dict[tuple[str, str], float] = field(default_factory=dict)
    _held: dict[tuple[str, str], int] = field(default_factory=dict)
    _sent: dict[str, deque[float]] = field(default_factory=dict)
    _held_cause: dict[str, int] = field(default_factory=dict)

    def admit(self, cause: str, subject: str) -> tuple[bool, int]:
        """(send it?, alerts held back since the last one sent for this cause/subject)."""
        key = (cause, subject)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False, 0
        sent = self._sent.setdefault(cause, deque())
        while sent and now - sent[0] >= self.interval_s:
            sent.popleft()
        if self.interval_s > 0 and len(sent) >= self.per_cause:
            self._held_cause[cause] = self._held_cause.get(cause, 0) + 1
            return False, 0
        sent.append(now)
        self._last[key] = now
        return True, self._held.pop(key, 0) + self._held_cause.pop(cause, 0)


def subject_of(details: dict[str, Any]) -> str:
    for key in ("account", "follower", "rule"):
        if details.get(key):
            return f"{details[key]}:{details.get('master_item', '')}"
    return ""


def build_sinks(config: AlertsConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if config.telegram is not None:
        sinks.append(TelegramBot(config.telegram, config.timeout_s))
    if config.webhook is not None:
        sinks.append(Webhook(config.webhook, config.timeout_s))
    if config.command is not None:
        sinks.append(Command(config.command, config.timeout_s))
    return sinks


class AlertDispatcher:
    def __init__(
        self,
        config: AlertsConfig,
        *,
        sinks: list[Sink] | None = None,
        backoff_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._sinks = sinks
        self._backoff_s = backoff_s
        self._gate = RateGate(config.repeat_after_s, clock)
        self._queues: list[tuple[Sink, asyncio.Queue[dict[str, Any]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._host = socket.gethostname()
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        sinks = self._sinks if self._sinks is not None else build_sinks(self._config)
        self._sinks = sinks
        for sink in sinks:
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
            self._queues.append((sink, queue))
            self._tasks.append(
                asyncio.create_task(self._drain(sink, queue), name=f"alerts-{sink.name}")
            )

    def alert(self, cause: str, text: str, details: dict[str, Any]) -> None:
        """Never blocks, never raises: the copy path calls this."""
        try:
            self._alert(cause, text, details)
        except Exception:
            log.exception("alert not queued", cause=cause)

    def _alert(self, cause: str, text: str, details: dict[str, Any]) -> None:
        log.warning("alert", **alert_line_fields(cause, text, details))
        if cause not in self._config.causes or not self._queues:
            return
        send, repeats = self._gate.admit(cause, subject_of(details))
        if not send:
            return
        body = {
            "cause": cause,
            "text": text + (f" (and {repeats} more like it)" if repeats else ""),
            "details": details,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": self._host,
        }
        for sink, queue in self._queues:
            try:
                queue.put_nowait(body)
            except asyncio.QueueFull:
                log.warning("alert dropped", sink=sink.name, cause=cause, reason="sink queue full")

    async def _drain(self, sink: Sink, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            body = await queue.get()
            try:
                await self._deliver(sink, body)
            finally:
                queue.task_done()

    async def _deliver(self, sink: Sink, body: dict[str, Any]) -> None:
        delay = self._backoff_s
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await sink.send(body)
                self.sent += 1
                return
            except SinkError as exc:
                error = str(exc)
            except Exception as exc:  # a sink bug must not end the sink's task
                error = f"{sink.name}: {type(exc).__name__}"
            if attempt == ATTEMPTS:
                break
            log.info(
                "alert delivery failed", sink=sink.name, error=error, attempt=attempt, in_s=delay
            )
            await asyncio.sleep(delay)
            delay *= 2
        self.failed += 1
        log.error("alert not delivered", sink=sink.name, cause=body["cause"], error=error)

    async def stop(self) -> None:
        """Let the sinks send what is queued (briefly), then end them."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(q.join() for _, q in self._queues)), STOP_FLUSH_S
            )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sink in self._sinks or []:
            with contextlib.suppress(Exception):
                await sink.close()
        self._tasks, self._queues = [], []

"""Where alerts go. Each sink's ``send`` delivers one alert or raises ``SinkError``.

httpx carries the HTTP sinks (and nothing hand-written does): it does TLS verification,
timeouts, redirects refused and connection reuse right. The Telegram bot token is part of
the URL, so no error text that could hold the URL is ever logged: only status codes and
exception types.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

import httpx

from cmamd.config.operating import CommandSink, TelegramSink, WebhookSink

MAX_TELEGRAM_TEXT = 4096

# httpx logs every request's URL at INFO, and a Telegram URL holds the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)


class SinkError(Exception):
    pass


class Sink(Protocol):
    name: str

    async def send(self, alert: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class TelegramBot:
    name = "telegram"

    def __init__(self, config: TelegramSink, timeout_s: float) -> None:
        self._url = (
            f"{config.api_url.rstrip('/')}/bot{config.resolved_token.get_secret_value()}"
            "/sendMessage"
        )
        self._chat_id = config.chat_id
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(self, alert: dict[str, Any]) -> None:
        text = f"cmamd [{alert['cause']}] {alert['text']}"[:MAX_TELEGRAM_TEXT]
        try:
            reply = await self._client.post(
                self._url, json={"chat_id": self._chat_id, "text": text}
            )
        except httpx.HTTPError as exc:
            raise SinkError(f"telegram: {type(exc).__name__}") from None
        if reply.status_code != 200:
            raise SinkError(f"telegram: HTTP {reply.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


class Webhook:
    name = "webhook"

    def __init__(self, config: WebhookSink, timeout_s: float) -> None:
        self._url = config.url
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(self, alert: dict[str, Any]) -> None:
        try:
            reply = await self._client.post(self._url, json=alert)
        except httpx.HTTPError as exc:
            raise SinkError(f"webhook: {type(exc).__name__}") from None
        if not 200 <= reply.status_code < 300:
            raise SinkError(f"webhook: HTTP {reply.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


class Command:
    """Runs ``argv`` with the alert as JSON on stdin; exit 0 is delivery."""

    name = "command"

    def __init__(self, config: CommandSink, timeout_s: float) -> None:
        self._argv = list(config.argv)
        self._timeout_s = timeout_s

    async def send(self, alert: dict[str, Any]) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise SinkError(f"command: cannot run {self._argv[0]}: {exc.strerror}") from None
        try:
            await asyncio.wait_for(process.communicate(json.dumps(alert).encode()), self._timeout_s)
        except TimeoutError:
            await _kill(process)
            raise SinkError(
                f"command: {self._argv[0]} did not finish in {self._timeout_s:g} s"
            ) from None
        except asyncio.CancelledError:  # the daemon is stopping: leave no process behind
            await _kill(process)
            raise
        if process.returncode != 0:
            raise SinkError(f"command: {self._argv[0]} exited {process.returncode}")

    async def close(self) -> None:
        return None


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()

"""A one-shot local HTTP listener that catches the OAuth redirect on a loopback redirect URI.

It answers only the redirect path with a short page, hands the query string to the waiting
`cmamd auth`, and stops. Anything else (a favicon request, another path) gets a 404 and
keeps it waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from urllib.parse import urlsplit

from cmamd.onboarding.errors import OnboardingError
from cmamd.onboarding.redirect import ListenAddress

_DONE_PAGE = (
    b"<!doctype html><html><head><title>cmamd</title></head><body>"
    b"<h1>Done</h1><p>cmamd received the authorisation. You can close this tab.</p>"
    b"</body></html>"
)
_MAX_HEAD_BYTES = 16 * 1024


class RedirectListener:
    def __init__(self, address: ListenAddress) -> None:
        self.address = address
        self._server: asyncio.Server | None = None
        self._query: asyncio.Future[str] | None = None

    async def start(self) -> None:
        self._query = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(
                self._serve, self.address.host, self.address.port
            )
        except OSError as exc:
            where = f"{self.address.host}:{self.address.port}"
            if exc.errno == errno.EADDRINUSE:
                raise OnboardingError(
                    f"port {where} of the redirect URI is already in use: stop what listens "
                    "there, or run `cmamd auth --no-listen` and paste the redirected URL"
                ) from None
            raise OnboardingError(
                f"cannot listen on {where} for the redirect ({exc.strerror}): fix "
                "api.redirect_uri, or paste the redirected URL instead"
            ) from None

    async def query(self) -> str:
        """The query string of the first request to the redirect path."""
        if self._query is None:
            raise RuntimeError("listener not started")
        return await asyncio.shield(self._query)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if len(head) > _MAX_HEAD_BYTES:
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            target = urlsplit(parts[1]) if len(parts) == 3 and parts[0] == "GET" else None
            if target is None or target.path != self.address.path or self._query is None:
                writer.write(_reply(404, b"not found\n", "text/plain"))
            elif self._query.done():
                writer.write(_reply(409, b"already received; close this tab\n", "text/plain"))
            else:
                writer.write(_reply(200, _DONE_PAGE, "text/html; charset=utf-8"))
                self._query.set_result(target.query)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _reply(status: int, body: bytes, content_type: str) -> bytes:
    reason = {200: "OK", 404: "Not Found", 409: "Conflict"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body

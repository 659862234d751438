"""The simulator's HTTP side: the OAuth authorisation page and the token endpoint
(docs/protocol.md §2).

Written from the protocol facts alone, on purpose sharing no code with the daemon's own
onboarding client, so that a misreading there cannot hide behind the same misreading here.

* ``GET /apps/auth?client_id&redirect_uri&scope[&state]``: the user's grant is automatic
  (for the configured cTID and accounts); answers a 302 to ``redirect_uri`` with ``code``
  and ``state``. An unknown client, an inactive application, an unregistered redirect URI
  or a bad scope get an HTML error page (400) and no redirect, as a browser would show.
* ``GET /apps/token?grant_type=authorization_code&code&redirect_uri&client_id&client_secret``
  and ``?grant_type=refresh_token&refresh_token&client_id&client_secret``: JSON with
  ``accessToken, refreshToken, expiresIn, tokenType, errorCode, description``. A refusal
  is HTTP 200 with ``errorCode`` set (as the real endpoint does). Codes live one minute
  and are single-use; refresh tokens are single-use; a grant rotates the cTID's pair.

Stricter than the real service where it is unsure: only GET, every parameter required,
no repeated parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import structlog

from cmamd.sim.token_store import TokenRefused, TokenStore

log = structlog.get_logger("cmamd.sim.oauth")

CODE_TTL_S = 60.0
AUTH_PATH = "/apps/auth"
TOKEN_PATH = "/apps/token"
SCOPES = frozenset({"trading", "accounts"})
_MAX_HEAD_BYTES = 16 * 1024


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    ctid: str
    account_ids: frozenset[int]
    scope: str
    issued_at: float
    used: bool = False


@dataclass(slots=True)
class OAuthSettings:
    """What the stand-in grants; tests change these at run time."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    grant_ctid: str
    grant_accounts: frozenset[int] | None = None  # None: every account of the cTID
    active: bool = True  # False: an application Spotware has not activated yet
    drop_refresh_replies: int = 0  # refreshes processed but answered by a dropped socket
    hang_token_replies: bool = False  # the token endpoint never answers
    html_token_replies: bool = False  # the token endpoint answers an HTML error page
    requests: list[str] = field(default_factory=list)  # "GET /apps/token" per request


class OAuthStandIn:
    def __init__(
        self,
        settings: OAuthSettings,
        tokens: TokenStore,
        clock: Callable[[], float] = time.time,
        on_rotated: Callable[[frozenset[int], str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_rotated = on_rotated
        self._tokens = tokens
        self._clock = clock
        self._codes: dict[str, _Code] = {}
        self._server: asyncio.Server | None = None
        self._base: str | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=ssl_context)
        bound = self._server.sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self._base = f"{'https' if ssl_context else 'http'}://{shown}:{bound}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    @property
    def base_url(self) -> str:
        if self._base is None:
            raise RuntimeError("the OAuth stand-in is not started")
        return self._base

    @property
    def auth_url(self) -> str:
        return self.base_url + AUTH_PATH

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    # --- HTTP -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if len(head) > _MAX_HEAD_BYTES:
                raise ValueError("head too long")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _version = request_line.split(" ", 2)
            reply = await self._handle(method, target)
            if reply is None:  # fault: processed, then the reply is lost with the socket
                writer.transport.abort()
                return
            writer.write(reply)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.write(_response(400, "text/plain", b"bad request\n"))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, method: str, target: str) -> bytes | None:
        parts = urlsplit(target)
        self.settings.requests.append(f"{method} {parts.path}")
        if method != "GET":
            return _response(405, "text/plain", b"only GET\n")
        query = parse_qs(parts.query, keep_blank_values=True)
        if any(len(values) > 1 for values in query.values()):
            return _page(400, "Bad request", "a parameter is repeated")
        params = {key: values[0] for key, values in query.items()}
        if parts.path == AUTH_PATH:
            return self._authorise(params)
        if parts.path == TOKEN_PATH:
            if self.settings.hang_token_replies:
                await asyncio.Event().wait()  # cancelled on stop
            if self.settings.html_token_replies:
                return _page(502, "Bad gateway", "upstream unavailable")
            return self._token(params)
        return _page(404, "Not found", parts.path)

    # --- authorisation page -------------------------------------------------------------

    def _authorise(self, params: dict[str, str]) -> bytes:
        settings = self.settings
        if params.get("client_id") != settings.client_id:
            return _page(400, "Application not found", "the client_id is unknown")
        if not settings.active:
            return _page(400, "Application not active", "this application is not activated yet")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in settings.redirect_uris:
            return _page(400, "Invalid redirect URI", "redirect_uri is not registered")
        scope = params.get("scope", "")
        if scope not in SCOPES:
            return _page(400, "Invalid scope", "scope must be trading or accounts")
        ctid = self._tokens.by_name(settings.grant_ctid)
        granted = ctid.all_account_ids
        if settings.grant_accounts is not None:
            granted = granted & settings.grant_accounts
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            settings.client_id, redirect_uri, ctid.name, granted, scope, self._clock()
        )
        query = {"code": code}
        if "state" in params:
            query["state"] = params["state"]
        location = _with_query(redirect_uri, query)
        head = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
        return (head + "Connection: close\r\n\r\n").encode("latin-1")

    # --- token endpoint -----------------------------------------------------------------

    def _token(self, params: dict[str, str]) -> bytes | None:
        settings = self.settings
        if (
            params.get("client_id") != settings.client_id
            or params.get("client_secret") != settings.client_secret
        ):
            return _error("ACCESS_DENIED", "clientId or clientSecret is incorrect")
        if not settings.active:
            return _error("ACCESS_DENIED", "the application is not active")
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(params)
        if grant_type == "refresh_token":
            return self._refresh(params)
        return _error("INVALID_REQUEST", "grant_type must be authorization_code or refresh_token")

    def _exchange_code(self, params: dict[str, str]) -> bytes:
        code = self._codes.get(params.get("code", ""))
        if code is None:
            return _error("INVALID_GRANT", "authorization code is unknown")
        if code.used:
            return _error("INVALID_GRANT", "authorization code was already used")
        code.used = True
        if self._clock() - code.issued_at >= CODE_TTL_S:
            return _error("INVALID_GRANT", "authorization code has expired")
        if params.get("redirect_uri") != code.redirect_uri:
            return _error("INVALID_GRANT", "redirect_uri differs from the authorisation request")
        ctid = self._tokens.grant(code.ctid, code.account_ids, code.scope)
        self._rotated(ctid.all_account_ids, "Access token was re-granted")
        return _pair(ctid.access_token or "", ctid.refresh_token, self._tokens.ttl_s)

    def _refresh(self, params: dict[str, str]) -> bytes | None:
        try:
            ctid = self._tokens.refresh(params.get("refresh_token", ""))
        except TokenRefused as error:
            return _error(error.code, error.description)
        self._rotated(ctid.account_ids, "Access token was refreshed")
        if self.settings.drop_refresh_replies > 0:
            self.settings.drop_refresh_replies -= 1
            return None
        return _pair(ctid.access_token or "", ctid.refresh_token, self._tokens.ttl_s)

    def _rotated(self, account_ids: frozenset[int], reason: str) -> None:
        if self._on_rotated is not None:
            self._on_rotated(account_ids, reason)

    def describe(self) -> dict[str, Any]:
        return {
            "auth_url": self.auth_url,
            "token_url": self.token_url,
            "redirect_uris": list(self.settings.redirect_uris),
            "grant_ctid": self.settings.grant_ctid,
        }


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(extra)}" if parts.query else urlencode(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _pair(access: str, refresh: str, ttl_s: float) -> bytes:
    body = {
        "accessToken": access,
        "tokenType": "bearer",
        "expiresIn": int(ttl_s),
        "refreshToken": refresh,
        "errorCode": None,
        "description": None,
    }
    return _response(200, "application/json", json.dumps(body).encode())


def _error(code: str, description: str) -> bytes:
    # The real endpoint answers refusals with HTTP 200 and errorCode set (docs/protocol.md §2).
    body = {"errorCode": code, "description": description}
    return _response(200, "application/json", json.dumps(body).encode())


def _page(status: int, title: str, text: str) -> bytes:
    html = f"<html><head><title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>"
    html += f"<p>{escape(text)}</p></body></html>"
    return _response(status, "text/html; charset=utf-8", html.encode())


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _response(status: int, content_type: str, body: bytes) -> bytes:
    reason = _REASONS.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body

"""The OAuth token endpoint (docs/protocol.md §2): a GET with query parameters, a JSON reply.

The endpoint answers a refusal with HTTP 200 and ``errorCode`` set, so the status alone says
nothing: every reply is checked for ``errorCode`` and for the fields a pair needs. TLS is
verified (with ``ca_file`` when configured) and every call has a timeout.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from cmamd.connection.token_refresh import TokenPair
from cmamd.onboarding.errors import OnboardingError

DEFAULT_TIMEOUT_S = 15.0
# errorCode values that mean the application itself was refused, not the code
_CLIENT_CODES = frozenset({"ACCESS_DENIED", "INVALID_CLIENT", "UNAUTHORIZED_CLIENT"})


async def exchange_code(
    token_url: str,
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    verify: ssl.SSLContext | bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TokenPair:
    params = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    return parse_reply(*await _get(token_url, params, verify, timeout_s), token_url)


async def _get(
    url: str, params: dict[str, str], verify: ssl.SSLContext | bool, timeout_s: float
) -> tuple[int, str, bytes]:
    try:
        async with httpx.AsyncClient(verify=verify, timeout=timeout_s, trust_env=False) as client:
            response = await client.get(url, params=params)
    except httpx.TimeoutException:
        raise OnboardingError(
            f"the token endpoint {url} did not answer within {timeout_s:g} s: check the "
            "network and api.token_url, then run `cmamd auth` again (the code is spent)"
        ) from None
    except httpx.HTTPError as exc:
        # str(exc) of a connect error names the host and the cause, never the query
        reason = _reason(exc)
        raise OnboardingError(
            f"cannot reach the token endpoint {url} ({reason}): check the network and "
            "api.token_url (and ca_file for a private CA)"
        ) from None
    return response.status_code, response.headers.get("content-type", ""), response.content


def _reason(exc: httpx.HTTPError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failure: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def parse_reply(status: int, content_type: str, body: bytes, url: str) -> TokenPair:
    """A token pair from the endpoint's reply, or OnboardingError saying what is wrong."""
    data: Any = None
    if "json" in content_type or body[:1] in (b"{", b"["):
        try:
            data = json.loads(body)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        kind = content_type.split(";")[0] or "no content type"
        raise OnboardingError(
            f"the token endpoint {url} answered HTTP {status} with {kind} instead of JSON: "
            "check api.token_url (Spotware's is https://openapi.ctrader.com/apps/token) and "
            "try again later if it is right"
        )
    error_code = data.get("errorCode")
    if error_code:
        description = str(data.get("description") or "").strip()
        detail = f"{error_code}: {description}" if description else str(error_code)
        if str(error_code).upper() in _CLIENT_CODES:
            raise OnboardingError(
                f"the token endpoint refused the application ({detail}): check api.client_id "
                "and the client secret, and that Spotware has activated the application "
                "(new applications take a day or two)"
            )
        raise OnboardingError(
            f"the token endpoint refused the code ({detail}): a code is valid for about a "
            "minute and only once, and api.redirect_uri must be the one registered for the "
            "application; run `cmamd auth` again"
        )
    access = data.get("accessToken")
    refresh = data.get("refreshToken")
    expires_in = data.get("expiresIn")
    if (
        not isinstance(access, str)
        or not access
        or not isinstance(refresh, str)
        or not refresh
        or not isinstance(expires_in, int)
        or isinstance(expires_in, bool)
        or expires_in <= 0
    ):
        raise OnboardingError(
            f"the token endpoint {url} answered without a usable token pair "
            "(accessToken, refreshToken, expiresIn): check api.token_url"
        )
    if status != 200:
        raise OnboardingError(f"the token endpoint {url} answered HTTP {status}: try again later")
    return TokenPair(access, refresh, expires_in, str(data.get("tokenType") or "bearer"))


def mask(token: str) -> str:
    """What of a token may be shown: its first 4 characters and its length."""
    return f"{token[:4]}…({len(token)} chars)" if len(token) > 8 else "****"

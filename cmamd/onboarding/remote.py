"""What onboarding asks the Open API: application auth, and the accounts a token grants.

Each call opens its own short-lived connection (one attempt, no reconnect), so a wrong
setting is reported at once with what it means, instead of being retried as the daemon does.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

from websockets.exceptions import InvalidStatus, WebSocketException

from cmamd.config.models import ApiConfig
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.errors import ConnectionClosedError
from cmamd.connection.ratelimit import Priority
from cmamd.onboarding.errors import OnboardingError
from cmamd.protocol.codec import ProtocolError
from cmamd.protocol.errors import OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

# What an application-auth refusal means, for the user (docs/protocol.md §3, §7).
_APP_AUTH_MEANING = {
    "CH_CLIENT_AUTH_FAILURE": (
        "wrong client id or secret, or the application is not active yet (Spotware "
        "activates new applications within a day or two)"
    ),
    "CH_OA_CLIENT_NOT_FOUND": "no application with this client id: check api.client_id",
    "SERVER_IS_UNDER_MAINTENANCE": "the server is under maintenance: try again later",
    "CONNECTIONS_LIMIT_EXCEEDED": (
        "the application has too many connections open (a daemon running elsewhere?)"
    ),
}


@dataclass(frozen=True, slots=True)
class GrantedAccount:
    account_id: int
    live: bool
    login: int
    broker: str


@dataclass(frozen=True, slots=True)
class Grant:
    scope: str  # "trading" or "accounts" (view only)
    accounts: list[GrantedAccount]


def environment(live: bool) -> str:
    return "live" if live else "demo"


def open_connection(api: ApiConfig, live: bool) -> OpenApiConnection:
    return OpenApiConnection(
        api.url_for(live),
        api.client_id,
        api.resolved_client_secret.get_secret_value(),
        name=f"onboarding-{environment(live)}",
        max_rps=api.max_rps,
        ssl_context=api.ssl_context(),
        request_timeout_s=api.request_timeout_s,
        heartbeat_interval_s=api.heartbeat_interval_s,
        silence_timeout_s=api.silence_timeout_s,
    )


async def connect(api: ApiConfig, live: bool, timeout_s: float) -> OpenApiConnection:
    """A connection that passed application auth, or OnboardingError saying why not."""
    conn = open_connection(api, live)
    try:
        await asyncio.wait_for(conn.start(connect_attempts=1), timeout_s)
    except BaseException as exc:
        await conn.close()
        if isinstance(exc, Exception):
            raise OnboardingError(explain_connect_failure(exc, api, live, timeout_s)) from None
        raise
    return conn


def explain_connect_failure(exc: Exception, api: ApiConfig, live: bool, timeout_s: float) -> str:
    url = api.url_for(live)
    if isinstance(exc, OpenApiError):
        meaning = _APP_AUTH_MEANING.get(exc.code, exc.description or "refused")
        return f"{url}: application auth refused: {exc.code}: {meaning}"
    if isinstance(exc, TimeoutError):
        return (
            f"{url}: no answer within {timeout_s:g} s (timeout): check the host, the port "
            "and that a firewall lets outgoing connections through"
        )
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"{url}: TLS failure: the server certificate is not trusted "
                f"({cause.verify_message}); set api.ca_file for a private CA"
            )
        if isinstance(cause, ssl.SSLError):
            return (
                f"{url}: TLS failure ({cause.reason or cause}): is the port a TLS port, and "
                "is api.tls right?"
            )
        if isinstance(cause, ConnectionRefusedError):
            return f"{url}: connection refused: nothing listens there; check host and port"
        if isinstance(cause, InvalidStatus):
            return f"{url}: not an Open API endpoint (HTTP {cause.response.status_code})"
        if isinstance(cause, OSError) and cause.strerror:
            return f"{url}: cannot connect: {cause.strerror}; check the host name and network"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, WebSocketException | ProtocolError | ConnectionClosedError):
        return f"{url}: the connection failed ({type(exc).__name__}): is it an Open API port?"
    return f"{url}: cannot connect: {type(exc).__name__}: {exc}"


async def check_application(api: ApiConfig, live: bool, timeout_s: float) -> float:
    """Connect and authenticate the application; returns the seconds it took."""
    started = time.monotonic()
    conn = await connect(api, live, timeout_s)
    elapsed = time.monotonic() - started
    await conn.close()
    return elapsed


async def list_granted(api: ApiConfig, live: bool, access_token: str, timeout_s: float) -> Grant:
    """The accounts ``access_token`` grants (``ProtoOAGetAccountListByAccessTokenReq``)."""
    conn = await connect(api, live, timeout_s)
    try:
        reply = await conn.request(
            pb.ProtoOAGetAccountListByAccessTokenReq(accessToken=access_token),
            priority=Priority.SESSION,
        )
    except OpenApiError as exc:
        raise OnboardingError(
            f"the server refused the token when listing its accounts ({exc.code}): run "
            "`cmamd auth` again"
        ) from None
    except (OutcomeUnknown, ConnectionClosedError, TimeoutError) as exc:
        raise OnboardingError(
            f"{api.url_for(live)}: no answer to the account list ({type(exc).__name__}): try again"
        ) from None
    finally:
        await conn.close()
    if not isinstance(reply, pb.ProtoOAGetAccountListByAccessTokenRes):
        raise OnboardingError(f"unexpected reply to the account list: {type(reply).__name__}")
    scope = "trading" if reply.permissionScope == model_pb2.SCOPE_TRADE else "accounts"
    accounts = [
        GrantedAccount(a.ctidTraderAccountId, a.isLive, a.traderLogin, a.brokerTitleShort)
        for a in reply.ctidTraderAccount
    ]
    return Grant(scope, accounts)

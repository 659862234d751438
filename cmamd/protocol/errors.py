"""Error replies of the Open API as typed exceptions.

The server answers a failed request with ``ProtoOAErrorRes`` (2142), ``ProtoErrorRes`` (50)
or, for trading requests, ``ProtoOAOrderErrorEvent`` (2132). The error code travels as the
enum *name* string, so ``code`` here is that string (``"TRADING_BAD_VOLUME"``).
"""

from __future__ import annotations

from google.protobuf.message import Message

from cmamd.protocol.proto import common_pb2, messages_pb2

RATE_LIMIT_CODES = frozenset({"REQUEST_FREQUENCY_EXCEEDED", "BLOCKED_PAYLOAD_TYPE"})
SESSION_LOST_CODES = frozenset(
    {"ACCOUNT_NOT_AUTHORIZED", "OA_AUTH_TOKEN_EXPIRED", "CH_ACCESS_TOKEN_INVALID"}
)
"""A request refused because the account's session is gone, not because of the request."""
ACCOUNT_REFUSED_CODES = frozenset(
    {
        "CH_ACCESS_TOKEN_INVALID",
        "CH_CTID_TRADER_ACCOUNT_NOT_FOUND",
        "RET_NO_SUCH_LOGIN",
        "RET_ACCOUNT_DISABLED",
        "CANT_ROUTE_REQUEST",
        "CH_CLIENT_AUTH_FAILURE",
    }
)
"""Authorising the account cannot succeed by retrying: the token or the account is refused."""
APPLICATION_AUTH_CODES = frozenset({"CH_CLIENT_AUTH_FAILURE", "CH_OA_CLIENT_NOT_FOUND"})


class OpenApiError(Exception):
    """The server rejected a request: ``code`` is the error code name."""

    def __init__(
        self,
        code: str,
        description: str = "",
        *,
        account_id: int | None = None,
        order_id: int | None = None,
        position_id: int | None = None,
        retry_after_s: float | None = None,
        maintenance_end_ms: int | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.account_id = account_id
        self.order_id = order_id
        self.position_id = position_id
        self.retry_after_s = retry_after_s
        self.maintenance_end_ms = maintenance_end_ms
        where = f" (account {account_id})" if account_id else ""
        super().__init__(f"{code}{where}: {description}" if description else f"{code}{where}")

    @property
    def is_rate_limit(self) -> bool:
        return self.code in RATE_LIMIT_CODES

    @property
    def session_lost(self) -> bool:
        return self.code in SESSION_LOST_CODES

    @property
    def account_refused(self) -> bool:
        return self.code in ACCOUNT_REFUSED_CODES


class OrderError(OpenApiError):
    """A trading request was refused (``ProtoOAOrderErrorEvent``): a definite rejection."""


class RateLimited(OpenApiError):
    """The server throttled the connection; ``retry_after_s`` says when to try again."""


class OutcomeUnknown(Exception):
    """A request was sent but no answer came (timeout or disconnect).

    Whether the server acted on it is unknown: the caller must ask the server (reconcile)
    before doing anything that could duplicate it.
    """


ERROR_MESSAGES: tuple[type[Message], ...] = (
    messages_pb2.ProtoOAErrorRes,
    common_pb2.ProtoErrorRes,
    messages_pb2.ProtoOAOrderErrorEvent,
)


def _opt(message: Message, field: str) -> int | None:
    return getattr(message, field) if message.HasField(field) else None


def error_from_message(message: Message) -> OpenApiError | None:
    """The typed exception for an error reply, or None when ``message`` is not one."""
    if isinstance(message, messages_pb2.ProtoOAOrderErrorEvent):
        return OrderError(
            message.errorCode,
            message.description,
            account_id=message.ctidTraderAccountId,
            order_id=_opt(message, "orderId"),
            position_id=_opt(message, "positionId"),
        )
    if isinstance(message, messages_pb2.ProtoOAErrorRes):
        cls = RateLimited if message.errorCode in RATE_LIMIT_CODES else OpenApiError
        return cls(
            message.errorCode,
            message.description,
            account_id=_opt(message, "ctidTraderAccountId"),
            retry_after_s=float(message.retryAfter) if message.HasField("retryAfter") else None,
            maintenance_end_ms=_opt(message, "maintenanceEndTimestamp"),
        )
    if isinstance(message, common_pb2.ProtoErrorRes):
        cls = RateLimited if message.errorCode in RATE_LIMIT_CODES else OpenApiError
        return cls(
            message.errorCode,
            message.description,
            maintenance_end_ms=_opt(message, "maintenanceEndTimestamp"),
        )
    return None

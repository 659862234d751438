"""Token refresh over the Open API connection (``ProtoOARefreshTokenReq``, docs/protocol.md §3).

The refresh token is single-use: once the server answers, the old one is dead. The caller
must persist the new pair before using it. If the request ends in ``OutcomeUnknown`` the
server may already have rotated the pair, so the old refresh token may no longer work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cmamd.connection.ratelimit import Priority
from cmamd.protocol.codec import ProtocolError
from cmamd.protocol.proto import messages_pb2

if TYPE_CHECKING:
    from cmamd.connection.client import OpenApiConnection


@dataclass(frozen=True, slots=True)
class TokenPair:
    # Tokens stay out of repr() so a logged or printed pair leaks nothing.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in_s: int
    token_type: str


async def refresh_tokens(
    conn: OpenApiConnection, refresh_token: str, *, timeout: float | None = None
) -> TokenPair:
    """Exchange ``refresh_token`` for a new pair; raises OpenApiError if it is refused."""
    reply = await conn.request(
        messages_pb2.ProtoOARefreshTokenReq(refreshToken=refresh_token),
        priority=Priority.SESSION,
        timeout=timeout,
    )
    if not isinstance(reply, messages_pb2.ProtoOARefreshTokenRes):
        raise ProtocolError(f"unexpected reply to a token refresh: {type(reply).__name__}")
    return TokenPair(
        access_token=reply.accessToken,
        refresh_token=reply.refreshToken,
        expires_in_s=reply.expiresIn,
        token_type=reply.tokenType,
    )

"""The Open API connection layer: one shared, self-healing connection per endpoint."""

from cmamd.connection.backoff import Backoff
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.errors import ConnectionClosedError, RequestNotSent, SendTimeout
from cmamd.connection.ratelimit import Clock, Priority, RequestThrottle, SystemClock
from cmamd.connection.token_refresh import TokenPair, refresh_tokens

__all__ = [
    "Backoff",
    "Clock",
    "ConnectionClosedError",
    "OpenApiConnection",
    "Priority",
    "RequestNotSent",
    "RequestThrottle",
    "SendTimeout",
    "SystemClock",
    "TokenPair",
    "refresh_tokens",
]

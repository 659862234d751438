"""Failures of the connection itself, as opposed to the server's error replies.

The split that matters to callers: ``RequestNotSent`` means the frame never left this
process, so sending it again cannot duplicate anything; ``OutcomeUnknown`` (from
cmamd.protocol.errors) means it was sent and the server may have acted on it.
"""

from __future__ import annotations


class RequestNotSent(Exception):
    """The request never reached the socket: safe to retry."""


class ConnectionClosedError(RequestNotSent):
    """The connection was closed (``close()``) before the request could be sent."""


class SendTimeout(RequestNotSent, TimeoutError):
    """The request's timeout passed while it waited for the link or for send budget."""

"""Checking a reply's type before it is read, with an error that names both messages.

A reply of the wrong type (a broken or hostile server, a mixed-up clientMsgId) must fail
like any other bad answer, with a typed error the caller's retry logic knows, never with
an ``assert`` (stripped under ``python -O``) or a cast that lets it through.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from cmamd.protocol.codec import ProtocolError

ReplyT = TypeVar("ReplyT", bound=Message)


class UnexpectedReply(ProtocolError):
    """The server answered a request with a message of another type."""


def expect_reply(reply: Message, expected: type[ReplyT], request: str) -> ReplyT:
    if not isinstance(reply, expected):
        raise UnexpectedReply(
            f"{request} was answered with {type(reply).__name__}, not {expected.__name__}"
        )
    return reply

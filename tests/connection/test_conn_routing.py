"""Unsolicited messages reach only the accounts they concern."""

from __future__ import annotations

from typing import Any

from cmamd.connection.dispatch import Dispatcher
from cmamd.protocol.codec import Envelope, decode, encode
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2


class _Log:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def exception(self, event: str, **kw: Any) -> None:
        self.errors.append(event)


def _wire(message: Any) -> Envelope:
    return decode(encode(message))


def test_messages_go_to_the_listeners_of_their_account_only() -> None:
    log = _Log()
    dispatcher = Dispatcher(log)
    seen: dict[str, list[str]] = {"a": [], "b": [], "all": []}
    dispatcher.accounts.add(1, lambda e: seen["a"].append(e.name))
    dispatcher.accounts.add(2, lambda e: seen["b"].append(e.name))
    dispatcher.add_listener(lambda e: seen["all"].append(e.name))

    dispatcher.dispatch(
        _wire(pb.ProtoOAExecutionEvent(ctidTraderAccountId=1, executionType=model_pb2.SWAP))
    )
    dispatcher.dispatch(_wire(pb.ProtoOASpotEvent(ctidTraderAccountId=2, symbolId=1)))
    dispatcher.dispatch(_wire(pb.ProtoOASpotEvent(ctidTraderAccountId=3, symbolId=1)))
    dispatcher.dispatch(
        _wire(pb.ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=[2, 3], reason="x"))
    )
    dispatcher.dispatch(_wire(pb.ProtoOAClientDisconnectEvent(reason="bye")))

    assert seen["a"] == ["ProtoOAExecutionEvent", "ProtoOAClientDisconnectEvent"]
    assert seen["b"] == [
        "ProtoOASpotEvent",
        "ProtoOAAccountsTokenInvalidatedEvent",
        "ProtoOAClientDisconnectEvent",
    ]
    assert len(seen["all"]) == 5, "connection-wide listeners still see everything"


def test_a_failing_account_listener_does_not_starve_the_others() -> None:
    log = _Log()
    dispatcher = Dispatcher(log)
    seen: list[str] = []

    def broken(envelope: Envelope) -> None:
        raise RuntimeError("bug")

    dispatcher.accounts.add(1, broken)
    dispatcher.accounts.add(1, lambda e: seen.append(e.name))
    dispatcher.dispatch(_wire(pb.ProtoOASpotEvent(ctidTraderAccountId=1, symbolId=1)))
    assert seen == ["ProtoOASpotEvent"] and log.errors == ["account listener failed"]
    dispatcher.accounts.remove(1, broken)
    assert len(dispatcher.accounts) == 1

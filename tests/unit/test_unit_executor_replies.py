"""What the executor makes of a trade request's answer when the wire misbehaves."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cmamd.accounts.model import Side
from cmamd.connection.errors import ConnectionClosedError, SendTimeout
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication.intents import OpenPosition
from cmamd.replication.send import send

OPEN = OpenPosition(
    follower_account_id=2002,
    key="p1",
    symbol_id=1,
    side=Side.BUY,
    volume=100_000,
    relative_stop_loss=None,
    relative_take_profit=None,
    label="cm:1001:p1",
    client_order_id="cm1-1001-p1",
)


def follower(answer: Any) -> Any:
    async def request(*_args: Any, **_kw: Any) -> Any:
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return SimpleNamespace(connection=SimpleNamespace(request=request))


async def send_one(answer: Any) -> tuple[str, str, bool]:
    result = await send(follower(answer), OPEN, order_timeout_s=1.0)
    return result.outcome.value, result.detail, result.filled


async def test_a_reply_of_the_wrong_type_is_an_unknown_outcome_not_a_success() -> None:
    # "done" would plan the key again at once, before the fill arrives: a second copy
    outcome, detail, filled = await send_one(pb.ProtoOAVersionRes(version="x"))
    assert (outcome, filled) == ("unknown", False)
    assert "ProtoOAVersionRes" in detail


async def test_a_request_never_sent_is_not_sent_not_a_crash() -> None:
    # "not_sent" is deferred by the executor and planned again once the link is back
    for error in (SendTimeout("not sent within 2 s (link down)"), ConnectionClosedError("gone")):
        outcome, detail, filled = await send_one(error)
        assert (outcome, filled) == ("not_sent", False)
        assert detail.startswith("not sent")

"""Sending one intent and waiting for the follower's event that completes it.

The only I/O of an order's life; what the answer means is decided in ``outcomes.py``.
"""

from __future__ import annotations

from cmamd.accounts.session import AccountSession
from cmamd.connection.errors import RequestNotSent
from cmamd.protocol.errors import OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication import trade_requests
from cmamd.replication.intents import Intent
from cmamd.replication.outcomes import Outcome, SendResult, from_completion, from_error


async def send(follower: AccountSession, intent: Intent, order_timeout_s: float) -> SendResult:
    request = trade_requests.build_request(intent)
    try:
        reply = await follower.connection.request(
            request,
            priority=trade_requests.priority_of(intent),
            account_id=intent.follower_account_id,
        )
    except OutcomeUnknown as exc:
        return SendResult(Outcome.UNKNOWN, str(exc) or "no answer")
    except RequestNotSent as exc:
        return SendResult(Outcome.NOT_SENT, f"not sent: {exc or type(exc).__name__}")
    except OpenApiError as exc:
        return from_error(intent, exc)
    if not isinstance(reply, pb.ProtoOAExecutionEvent):  # a wrong reply proves nothing
        return SendResult(Outcome.UNKNOWN, f"unexpected reply {type(reply).__name__}")
    if not reply.HasField("order"):
        return SendResult(Outcome.DONE)
    wanted = trade_requests.completion_types(intent)
    if reply.executionType in wanted:
        return from_completion(intent, reply.executionType, reply.errorCode)
    order_id = reply.order.orderId
    try:
        ended = await follower.wait_for_order(order_id, wanted, order_timeout_s)
    except TimeoutError:
        return SendResult(Outcome.UNKNOWN, f"no outcome for order {order_id}")
    # the broker's code is the completing event's, not the acceptance's
    return from_completion(intent, ended, follower.order_error(order_id) or reply.errorCode)

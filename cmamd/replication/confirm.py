"""Confirming from the broker's own order history whether an open reached it.

After a crash the journal may hold an open (a market order or a pending copy) whose
outcome was never recorded, its link still OPENING. Reconciling shows the copy only if it
still exists: one that filled and was then closed by hand (or by its stop) while the
daemon was down leaves no trace there, and the item would be opened a second time. The
order history keeps it: an order with the intent's clientOrderId that filled (or, for a
pending copy, was accepted) proves the copy existed, so the link is confirmed OPEN and the
planner treats the missing copy as closed on the follower, never reopening it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from cmamd.accounts.session import AccountSession
from cmamd.connection.ratelimit import Priority
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.state.store import JournalEntry

OPEN_ACTIONS = frozenset({"OpenPosition", "PlacePendingOrder"})
HISTORY_MARGIN_MS = 60_000  # clock skew between this host and the broker


async def orders_by_client_id(
    session: AccountSession, from_ms: int, to_ms: int
) -> dict[str, model_pb2.ProtoOAOrder]:
    reply = cast(
        pb.ProtoOAOrderListRes,
        await session.connection.request(
            pb.ProtoOAOrderListReq(
                ctidTraderAccountId=session.account_id, fromTimestamp=from_ms, toTimestamp=to_ms
            ),
            priority=Priority.QUERY,
            account_id=session.account_id,
        ),
    )
    return {o.clientOrderId: o for o in reply.order if o.clientOrderId}


def reached_broker(action: str, order: model_pb2.ProtoOAOrder) -> bool:
    """Whether the copy this order was meant to make existed at some point."""
    if action == "OpenPosition":
        return order.orderStatus == model_pb2.ORDER_STATUS_FILLED or order.executedVolume > 0
    return order.orderStatus != model_pb2.ORDER_STATUS_REJECTED


def unfinished_opens(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    return [e for e in entries if e.action in OPEN_ACTIONS and e.client_order_id]

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

from cmamd.accounts.session import AccountSession
from cmamd.connection.ratelimit import Priority
from cmamd.logs import get_logger
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.protocol.replies import expect_reply
from cmamd.replication.links import Link, LinkStatus
from cmamd.state.store import JournalEntry, StateStore

log = get_logger("cmamd.replication")

OPEN_ACTIONS = frozenset({"OpenPosition", "PlacePendingOrder"})
HISTORY_MARGIN_MS = 60_000  # clock skew between this host and the broker


async def orders_by_client_id(
    session: AccountSession, from_ms: int, to_ms: int
) -> dict[str, model_pb2.ProtoOAOrder]:
    answer = await session.connection.request(
        pb.ProtoOAOrderListReq(
            ctidTraderAccountId=session.account_id, fromTimestamp=from_ms, toTimestamp=to_ms
        ),
        priority=Priority.QUERY,
        account_id=session.account_id,
    )
    reply = expect_reply(answer, pb.ProtoOAOrderListRes, "ProtoOAOrderListReq")
    if reply.hasMore:  # the window starts at the oldest unfinished open: rarely this long
        log.warning("order history truncated by the server", account=session.name)
    return {o.clientOrderId: o for o in reply.order if o.clientOrderId}


def reached_broker(action: str, order: model_pb2.ProtoOAOrder) -> bool:
    """Whether the copy this order was meant to make existed at some point."""
    if action == "OpenPosition":
        return order.orderStatus == model_pb2.ORDER_STATUS_FILLED or order.executedVolume > 0
    return order.orderStatus != model_pb2.ORDER_STATUS_REJECTED


def unfinished_opens(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    return [e for e in entries if e.action in OPEN_ACTIONS and e.client_order_id]


async def confirm_after_restart(
    store: StateStore, sessions: Iterable[AccountSession], now_ms: int
) -> list[Link]:
    """Opens from before a crash that the order history shows executed: their OPENING
    links are stored confirmed OPEN (returned). Only for followers that are ready."""
    confirmed: list[Link] = []
    entries = unfinished_opens(store.open_intents())
    by_id = {s.account_id: s for s in sessions if s.ready.is_set()}
    for follower_id in sorted({e.follower_id for e in entries} & set(by_id)):
        mine = [e for e in entries if e.follower_id == follower_id]
        since = min(e.created_ms for e in mine) - HISTORY_MARGIN_MS
        try:
            history = await orders_by_client_id(
                by_id[follower_id], since, now_ms + HISTORY_MARGIN_MS
            )
        except Exception as exc:
            log.warning("order history not available", follower_id=follower_id, error=str(exc))
            continue
        for entry in mine:
            order = history.get(entry.client_order_id or "")
            if order is None or not reached_broker(entry.action, order):
                continue
            for data in store.links(follower_id=follower_id):
                link = Link.from_dict(data)
                if link.key == entry.key and link.status is LinkStatus.OPENING:
                    store.put_link(link.opened(now_ms).to_dict())
                    confirmed.append(link)
                    log.warning(
                        "open from before a restart confirmed by the order history",
                        follower_id=follower_id,
                        master_item=entry.key,
                        client_order_id=entry.client_order_id,
                    )
    return confirmed


async def executed(session: AccountSession, client_order_id: str, action: str, now_ms: int) -> bool:
    """Whether the order history shows this recent open executed (False when unknown)."""
    try:
        history = await orders_by_client_id(
            session, now_ms - HISTORY_MARGIN_MS, now_ms + HISTORY_MARGIN_MS
        )
    except Exception as exc:
        log.warning("order history not available", account=session.name, error=str(exc))
        return False
    order = history.get(client_order_id)
    return order is not None and reached_broker(action, order)


def settle_open_intents(store: StateStore, sessions: Iterable[AccountSession]) -> int:
    """After a crash: intents sent (or about to be) whose outcome was never recorded.

    Called once the followers have been reconciled at start-up: what the broker holds is
    now the truth, and the planner works from it, so each such entry is marked resolved
    (the order either exists, labelled, and is adopted, or never happened).
    """
    settled = 0
    ready = {s.account_id for s in sessions if s.ready.is_set()}
    for entry in store.open_intents():
        if entry.follower_id not in ready:
            continue  # settled on a later start, once that account is reachable
        store.journal_outcome(
            entry.intent_id, "resolved", "outcome settled by reconciling at start-up"
        )
        log.warning(
            "unfinished order from before a restart settled by reconcile",
            follower_id=entry.follower_id,
            master_item=entry.key,
            action=entry.action,
            client_order_id=entry.client_order_id,
        )
        settled += 1
    return settled

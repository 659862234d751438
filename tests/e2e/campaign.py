"""Machinery of the kill campaign: an outside view of the followers and the verdict.

Nothing here reads the daemon's state. The master trades through its own client
connection (``MasterTrader``); the followers are read through another connection of
their own (``Observer``); the verdict computes, from the master's items and the rules,
what each follower must hold, and counts every difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from cmamd.accounts import convert
from cmamd.accounts.model import PendingOrder, Position
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.ratelimit import Priority
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.replication.labels import parse_label


@dataclass(frozen=True, slots=True)
class Holdings:
    positions: list[Position]
    orders: list[PendingOrder]


class Observer:
    """Reads accounts through a connection of its own (a second client, not the daemon)."""

    def __init__(self, connection: OpenApiConnection) -> None:
        self.connection = connection

    @classmethod
    async def connect(
        cls, url: str, client_id: str, client_secret: str, tokens: dict[int, str]
    ) -> Observer:
        connection = OpenApiConnection(url, client_id, client_secret, name="observer")
        await connection.start(connect_attempts=3)
        for account_id, token in tokens.items():
            await connection.request(
                pb.ProtoOAAccountAuthReq(ctidTraderAccountId=account_id, accessToken=token),
                priority=Priority.QUERY,
            )
        return cls(connection)

    async def holdings(self, account_id: int) -> Holdings:
        reply = cast(
            pb.ProtoOAReconcileRes,
            await self.connection.request(
                pb.ProtoOAReconcileReq(ctidTraderAccountId=account_id), priority=Priority.QUERY
            ),
        )
        return Holdings(
            [convert.position(p) for p in reply.position],
            [convert.pending_order(o) for o in reply.order if convert.is_resting(o)],
        )

    async def order_history(
        self, account_id: int, from_ms: int, to_ms: int
    ) -> list[model_pb2.ProtoOAOrder]:
        reply = cast(
            pb.ProtoOAOrderListRes,
            await self.connection.request(
                pb.ProtoOAOrderListReq(
                    ctidTraderAccountId=account_id, fromTimestamp=from_ms, toTimestamp=to_ms
                ),
                priority=Priority.QUERY,
            ),
        )
        return list(reply.order)

    async def close(self) -> None:
        await self.connection.close()


@dataclass(frozen=True, slots=True)
class FollowerRule:
    """What the campaign's rules prescribe for one follower: a volume multiplier."""

    name: str
    account_id: int
    multiplier: int


@dataclass(slots=True)
class HandActions:
    """What was done by hand on the followers: those items must never come back."""

    closed: set[tuple[int, int]] = field(default_factory=set)  # (follower, master position)
    cancelled: set[tuple[int, int]] = field(default_factory=set)  # (follower, master order)


@dataclass(slots=True)
class Tally:
    duplicates: int = 0
    orphans: int = 0
    missed: int = 0
    wrong_volumes: int = 0
    wrong_sl_tp: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.duplicates or self.orphans or self.missed or self.wrong_volumes or self.wrong_sl_tp
        )

    def line(self, actions: int, kills: int, restarts: int, seed: int) -> str:
        return (
            f"kill campaign seed={seed}: actions={actions} kills={kills} "
            f"clean_restarts={restarts} duplicates={self.duplicates} orphans={self.orphans} "
            f"missed={self.missed} wrong_volumes={self.wrong_volumes} "
            f"wrong_sl_tp={self.wrong_sl_tp}"
        )


def verdict(
    master_id: int,
    master: Holdings,
    origins: dict[int, int],
    followers: dict[FollowerRule, Holdings],
    hand: HandActions,
) -> Tally:
    """Compare each follower with what its rule prescribes for the master's items.

    ``origins``: master position id -> the pending order it filled from (its follower copy
    may carry the order's label). Prescribed: every master position copied at
    ``multiplier`` x its volume with the master's SL/TP, unless its copy was closed by hand
    on that follower; every master pending order copied likewise, unless cancelled by hand.
    """
    tally = Tally()
    positions = {p.position_id: p for p in master.positions}
    orders = {o.order_id: o for o in master.orders}
    for rule, held in followers.items():
        by_key: dict[str, list[Position | PendingOrder]] = {}
        items_held: list[Position | PendingOrder] = [*held.positions, *held.orders]
        for item in items_held:
            parsed = parse_label(item.label)
            if parsed is None or parsed[0] != master_id:
                tally.orphans += 1
                tally.details.append(f"{rule.name}: unlabelled item {item}")
                continue
            by_key.setdefault(parsed[1], []).append(item)
        owner = {f"o{order}": f"p{pid}" for pid, order in origins.items() if pid in positions}
        grouped: dict[str, list[Position | PendingOrder]] = {}
        for key, items in by_key.items():
            filled = [i for i in items if isinstance(i, Position)]
            resting = [i for i in items if isinstance(i, PendingOrder)]
            if key in owner and int(key[1:]) not in orders:
                grouped.setdefault(owner[key], []).extend(filled)
                grouped.setdefault(key, []).extend(resting)
            else:
                grouped.setdefault(key, []).extend(items)
        for key, items in grouped.items():
            if not items:
                continue
            item_id = int(key[1:])
            live = item_id in positions if key[0] == "p" else item_id in orders
            if not live:
                tally.orphans += len(items)
                tally.details.append(f"{rule.name}: orphan copies of {key}: {items}")
        for pid, master_position in positions.items():
            copies = [c for c in grouped.get(f"p{pid}", []) if isinstance(c, Position)]
            _check_position(tally, rule, hand, master_position, copies)
        for oid, master_order in orders.items():
            copies_o = [c for c in grouped.get(f"o{oid}", []) if isinstance(c, PendingOrder)]
            filled_o = [c for c in grouped.get(f"o{oid}", []) if isinstance(c, Position)]
            if filled_o:  # a follower copy that filled before the master's order
                tally.details.append(f"{rule.name}: o{oid} filled early on the follower")
            _check_order(tally, rule, hand, master_order, copies_o)
    return tally


def _check_position(
    tally: Tally, rule: FollowerRule, hand: HandActions, master: Position, copies: list[Position]
) -> None:
    key = f"p{master.position_id}"
    by_hand = (rule.account_id, master.position_id) in hand.closed
    if not _count_copies(tally, f"{rule.name}: {key}", copies, "closed" if by_hand else None):
        return
    volume = sum(c.volume for c in copies)
    if volume != master.volume * rule.multiplier or any(c.side is not master.side for c in copies):
        tally.wrong_volumes += 1
        tally.details.append(
            f"{rule.name}: {key} copies hold {volume}, due {master.volume * rule.multiplier}"
        )
    for copy in copies:
        if not _same(copy.stop_loss, master.stop_loss) or not _same(
            copy.take_profit, master.take_profit
        ):
            tally.wrong_sl_tp += 1
            tally.details.append(
                f"{rule.name}: {key} copy levels {copy.stop_loss}/{copy.take_profit}, "
                f"master {master.stop_loss}/{master.take_profit}"
            )


def _check_order(
    tally: Tally,
    rule: FollowerRule,
    hand: HandActions,
    master: PendingOrder,
    copies: list[PendingOrder],
) -> None:
    key = f"o{master.order_id}"
    by_hand = (rule.account_id, master.order_id) in hand.cancelled
    if not _count_copies(tally, f"{rule.name}: {key}", copies, "cancelled" if by_hand else None):
        return
    for copy in copies[:1]:
        price = copy.limit_price if copy.limit_price is not None else copy.stop_price
        want = master.limit_price if master.limit_price is not None else master.stop_price
        if copy.volume != master.volume * rule.multiplier or not _same(price, want):
            tally.wrong_volumes += 1
            tally.details.append(
                f"{rule.name}: {key} copy {copy.volume} at {price}, due "
                f"{master.volume * rule.multiplier} at {want}"
            )


def _count_copies(
    tally: Tally, item: str, copies: Sequence[object], ended_by_hand: str | None
) -> bool:
    """Tally missing and extra copies of one master item; True when its copies are to be
    compared with it. A copy ended by hand (``ended_by_hand``: how) must not come back."""
    if ended_by_hand is not None:
        if copies:
            tally.duplicates += len(copies)
            tally.details.append(f"{item} {ended_by_hand} by hand, copied again: {copies}")
        return False
    if not copies:
        tally.missed += 1
        tally.details.append(f"{item} not copied")
        return False
    if len(copies) > 1:
        tally.duplicates += len(copies) - 1
        tally.details.append(f"{item} copied {len(copies)} times: {copies}")
    return True


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < 1e-9


def transient_duplicates(
    tally: Tally,
    rule: FollowerRule,
    master_id: int,
    history: list[model_pb2.ProtoOAOrder],
    filled_from_orders: set[int],
) -> None:
    """Copies made twice and closed again are duplicates too (the spread was paid): from
    the follower's order history, a master market position must have opened at most one
    follower position, a master pending order at most one pending copy."""
    opened: dict[str, set[int]] = {}
    placed: dict[str, set[int]] = {}
    pending_kinds = (model_pb2.LIMIT, model_pb2.STOP)
    for order in history:
        parsed = parse_label(order.tradeData.label)
        if parsed is None or parsed[0] != master_id or order.closingOrder:
            continue
        key = parsed[1]
        if order.orderType in pending_kinds:
            if order.orderStatus != model_pb2.ORDER_STATUS_REJECTED:
                placed.setdefault(key, set()).add(order.orderId)
        elif key[0] == "p" and int(key[1:]) not in filled_from_orders and order.executedVolume:
            opened.setdefault(key, set()).add(order.positionId)
    for what, seen in (("opened", opened), ("placed", placed)):
        for key, ids in seen.items():
            if len(ids) > 1:
                tally.duplicates += len(ids) - 1
                tally.details.append(f"{rule.name}: {key} {what} {len(ids)} times: {sorted(ids)}")

"""Planning for a master pending order key ``o<O>`` (the semantics are listed in planner.py)."""

from __future__ import annotations

import dataclasses

from cmamd.accounts.model import OrderKind, PendingOrder, Position, SymbolSpec
from cmamd.config.rules import CopyMode
from cmamd.item_keys import position_key
from cmamd.protocol.units import round_price
from cmamd.replication.intents import (
    AmendPendingOrder,
    CancelPendingOrder,
    ClosePosition,
    KeyPlan,
    PlacePendingOrder,
    Skip,
)
from cmamd.replication.links import LinkStatus
from cmamd.replication.mapping import map_symbol
from cmamd.replication.plan_common import (
    MARKET_KINDS,
    KeyInputs,
    PlanBuilder,
    PlannerBug,
    follower_kind,
    follower_levels,
    follower_side,
    netted_conflict,
    not_ready,
    opening_blocked,
    rounded,
    short_selling,
    side_selected,
    sizing_context,
)
from cmamd.replication.sizing import scale_volume, size_volume, volume_cap

COPYABLE_KINDS = frozenset({OrderKind.LIMIT, OrderKind.STOP})


def plan_order(inputs: KeyInputs) -> KeyPlan:
    plan = PlanBuilder(inputs)
    if inputs.dest.mode is CopyMode.FROZEN:
        return plan.build()
    master_order = inputs.master.orders.get(inputs.item_id)
    if master_order is not None and master_order.kind in MARKET_KINDS:
        return plan.build()  # executing on the master: the position key decides
    own = inputs.label_of(inputs.key)
    copies = sorted(
        (
            order
            for order in inputs.labelled.orders
            if order.label == own and order.kind not in MARKET_KINDS
        ),
        key=lambda order: order.order_id,
    )
    filled = sorted(
        (p for p in inputs.labelled.positions if p.label == own),
        key=lambda p: (p.open_ms, p.position_id),
    )
    if master_order is None:
        _master_ended(plan, inputs, copies, filled)
    else:
        _record_fill_key(plan, inputs, master_order)
        if inputs.target.liquidate:
            _liquidate(plan, inputs, copies, filled)
        elif filled:
            _filled_first(plan, inputs, master_order, filled)
        elif copies:
            _follow(plan, inputs, master_order, copies)
        elif plan.link is None or plan.link.status is LinkStatus.OPENING:
            _decide_place(plan, inputs, master_order)
        elif plan.link.status is LinkStatus.OPEN:
            plan.note("copy not reopened", "the copy was cancelled on the follower")
            plan.set_status(LinkStatus.CLOSED, "cancelled on the follower")
    return plan.build()


def _owner(inputs: KeyInputs) -> str | None:
    """The master position this order filled into, as ``origins`` knows it.

    The position's plan reads the same mapping, so a hand-over happens only when that plan
    will see it; the link's fill_key alone is not enough (it feeds ``origins_for``).
    """
    for position, origin in inputs.origins.items():
        if origin == inputs.key:
            return position
    fill_key = inputs.link.fill_key if inputs.link is not None else None
    if fill_key is not None and inputs.origins.get(fill_key) == inputs.key:
        return fill_key
    return None


def _record_fill_key(plan: PlanBuilder, inputs: KeyInputs, master_order: PendingOrder) -> None:
    # Remembered so that, after the order fills while the daemon is away, its follower
    # copies can still be handed to the position it became.
    link = plan.link
    position_id = master_order.position_id
    if link is None or not position_id or position_id in inputs.master.positions:
        return
    if link.fill_key != position_key(position_id):
        plan.link = dataclasses.replace(
            link, fill_key=position_key(position_id), updated_ms=inputs.now_ms
        )


def _cancel(plan: PlanBuilder, inputs: KeyInputs, order: PendingOrder) -> None:
    plan.add(CancelPendingOrder(inputs.target.follower_account_id, inputs.key, order.order_id))


def _close(plan: PlanBuilder, inputs: KeyInputs, position: Position) -> None:
    plan.add(
        ClosePosition(
            inputs.target.follower_account_id, inputs.key, position.position_id, position.volume
        )
    )


def _master_ended(
    plan: PlanBuilder, inputs: KeyInputs, copies: list[PendingOrder], filled: list[Position]
) -> None:
    owner = _owner(inputs)
    link = plan.link
    if owner is not None:
        # The position's key cancels a still-pending copy and follows or closes the filled
        # ones (it opens a market copy if the follower's order had not filled).
        if link is not None and link.active:
            plan.set_status(LinkStatus.CLOSED, f"master order ended; {owner} takes over")
        return
    for order in copies:
        _cancel(plan, inputs, order)
    for position in filled:
        _close(plan, inputs, position)
    if copies or filled:
        plan.note("copies cancelling", "master order no longer pending")
        if link is None:
            plan.set_status(LinkStatus.CLOSED, "master order ended while unlinked")
    elif link is not None and link.active:
        plan.set_status(LinkStatus.CLOSED, "master order ended")


def _liquidate(
    plan: PlanBuilder, inputs: KeyInputs, copies: list[PendingOrder], filled: list[Position]
) -> None:
    for order in copies:
        _cancel(plan, inputs, order)
    for position in filled:
        _close(plan, inputs, position)
    if copies or filled:
        plan.note("copies cancelling", "equity stop")
    link = plan.link
    if link is None:
        plan.set_status(LinkStatus.SKIPPED, "equity stop")
    elif link.active and not (copies or filled):
        plan.set_status(LinkStatus.CLOSED, "equity stop")


def _filled_first(
    plan: PlanBuilder, inputs: KeyInputs, master_order: PendingOrder, filled: list[Position]
) -> None:
    """The follower's copy filled while the master's order still waits: keep it for the
    position the master order will open (any remainder order is left alone too)."""
    link = plan.link
    if link is None or link.status is not LinkStatus.OPEN:
        plan.note("copy waiting", "the follower's copy filled before the master order")
    if link is None or not link.active:
        volume = sum(p.volume for p in filled)
        adopted = plan.new_link(
            LinkStatus.OPEN, master_volume=master_order.volume, follower_volume=volume
        )
        plan.link = dataclasses.replace(adopted, fill_key=_fill_key(inputs, master_order))
    elif link.status is LinkStatus.OPENING:
        plan.link = link.opened(inputs.now_ms)


def _fill_key(inputs: KeyInputs, master_order: PendingOrder) -> str | None:
    position_id = master_order.position_id
    if position_id and position_id not in inputs.master.positions:
        return position_key(position_id)
    return inputs.link.fill_key if inputs.link is not None else None


def _follow(
    plan: PlanBuilder, inputs: KeyInputs, master_order: PendingOrder, copies: list[PendingOrder]
) -> None:
    copy, duplicates = copies[0], copies[1:]
    for order in duplicates:
        plan.note("copies cancelling", "duplicate copy", order_id=order.order_id)
        _cancel(plan, inputs, order)
    link = plan.link
    if link is None or not link.active:
        plan.note("copies adopted", "found on the follower", order_id=copy.order_id)
        adopted = plan.new_link(
            LinkStatus.OPEN, master_volume=master_order.volume, follower_volume=copy.volume
        )
        plan.link = dataclasses.replace(adopted, fill_key=_fill_key(inputs, master_order))
    elif link.status is LinkStatus.OPENING:
        plan.link = link.opened(inputs.now_ms)
    spec = inputs.follower.symbols_by_id.get(copy.symbol_id)
    if spec is None:
        return plan.note(
            "copy not followed", "follower symbol not loaded", symbol_id=copy.symbol_id
        )
    dest = inputs.dest
    if copy.side is not follower_side(dest, master_order.side) or copy.kind is not follower_kind(
        dest, master_order.kind
    ):
        plan.note("copies cancelling", "the copy no longer matches the rule (side or kind)")
        _cancel(plan, inputs, copy)
        return plan.set_status(LinkStatus.CLOSED, "copy no longer matches the rule")
    volume = _due_volume(plan, inputs, master_order, copy, spec)
    master_price = _price(master_order)
    if volume == 0 or master_price is None:
        plan.note("copies cancelling", "the master order shrank below the follower's minimum")
        _cancel(plan, inputs, copy)
        return plan.set_status(LinkStatus.CLOSED, "scaled below the symbol minimum")
    if dest.copy_sl_tp:
        stop, target = follower_levels(dest, master_order.stop_loss, master_order.take_profit)
    else:
        stop, target = copy.stop_loss, copy.take_profit  # the follower's own business
    price = round_price(master_price, spec.digits)
    stop, target = rounded(stop, spec.digits), rounded(target, spec.digits)
    # a request cannot remove an expiration: once the master drops its own, the copy's stays
    expiration = master_order.expiration_ms
    if expiration is None:
        expiration = copy.expiration_ms
    actual = (
        copy.volume,
        rounded(_price(copy), spec.digits),
        rounded(copy.stop_loss, spec.digits),
        rounded(copy.take_profit, spec.digits),
        copy.expiration_ms,
    )
    if (volume, price, stop, target, expiration) != actual:
        plan.add(
            AmendPendingOrder(
                follower_account_id=inputs.target.follower_account_id,
                key=inputs.key,
                order_id=copy.order_id,
                kind=copy.kind,
                volume=volume,
                price=price,
                stop_loss=stop,
                take_profit=target,
                expiration_ms=expiration,
            )
        )
    link = plan.held_link()
    mirrored = (master_order.stop_loss, master_order.take_profit)
    if dest.copy_sl_tp and (link.master_sl, link.master_tp) != mirrored:
        plan.link = link.mirrored(*mirrored, inputs.now_ms)
    return None


def _due_volume(
    plan: PlanBuilder,
    inputs: KeyInputs,
    master_order: PendingOrder,
    copy: PendingOrder,
    spec: SymbolSpec,
) -> int:
    link = plan.held_link()
    due = scale_volume(link.follower_volume, link.master_volume, master_order.volume, spec)
    if due > copy.volume:
        cap = volume_cap(inputs.dest.volume, spec)
        if cap is not None:
            due = max(copy.volume, min(due, cap))
        if inputs.dest.mode is not CopyMode.ON:
            due = copy.volume  # close_only: a pending copy may shrink, never grow
    return due


def _price(order: PendingOrder) -> float | None:
    return order.limit_price if order.kind is OrderKind.LIMIT else order.stop_price


def _skip(plan: PlanBuilder, master_order: PendingOrder, skip: Skip) -> None:
    plan.note("copy skipped", skip.reason)
    plan.link = plan.new_link(LinkStatus.SKIPPED, skip.reason, master_volume=master_order.volume)


def _place_blocker(inputs: KeyInputs, master_order: PendingOrder) -> Skip | None:
    dest = inputs.dest
    blocked = opening_blocked(inputs)
    if blocked is not None:
        return blocked
    if not dest.copy_pending:
        return Skip("copy_pending is off (its fill is copied as a market order)")
    if master_order.kind not in COPYABLE_KINDS:
        return Skip(f"{master_order.kind.value} orders are not copied")
    if _price(master_order) is None:
        return Skip(f"the master {master_order.kind.value} order has no price")
    position_id = master_order.position_id
    if position_id and position_id in inputs.master.positions:
        return Skip(
            f"the order changes open position {position_key(position_id)}; "
            "its copy follows that position's volume"
        )
    if master_order.updated_ms < inputs.target.started_ms and not dest.copy_existing:
        return Skip(
            "placed before the copy started (or came back from frozen) and copy_existing is off"
        )
    return side_selected(dest, master_order.side)


def _decide_place(plan: PlanBuilder, inputs: KeyInputs, master_order: PendingOrder) -> None:
    skip = _place_blocker(inputs, master_order)
    if skip is not None:
        return _skip(plan, master_order, skip)
    waiting = not_ready(inputs, master_order.symbol_id)
    if waiting is not None:
        return plan.note("copy waiting", waiting)
    dest = inputs.dest
    master_spec = inputs.master.symbols_by_id[master_order.symbol_id]
    spec = map_symbol(dest.symbols, master_spec.name, inputs.follower.symbols_by_name)
    if isinstance(spec, Skip):
        return _skip(plan, master_order, spec)
    side = follower_side(dest, master_order.side)
    skip = short_selling(spec, side) or netted_conflict(inputs, spec, {inputs.label_of(inputs.key)})
    if skip is not None:
        return _skip(plan, master_order, skip)
    price = _price(master_order)
    if price is None:  # _place_blocker skips an order without one
        raise PlannerBug(f"{inputs.key}: placing a copy of an order without a price")
    context = sizing_context(inputs, spec, price, master_order.stop_loss, master_order.take_profit)
    volume = size_volume(dest.volume, master_order.volume, master_spec, spec, context)
    if isinstance(volume, Skip):
        return _skip(plan, master_order, volume)
    stop, target = (
        follower_levels(dest, master_order.stop_loss, master_order.take_profit)
        if dest.copy_sl_tp
        else (None, None)
    )
    client_order_id = plan.next_client_order_id()
    plan.add(
        PlacePendingOrder(
            follower_account_id=inputs.target.follower_account_id,
            key=inputs.key,
            symbol_id=spec.symbol_id,
            side=side,
            kind=follower_kind(dest, master_order.kind),
            volume=volume,
            price=round_price(price, spec.digits),
            stop_loss=rounded(stop, spec.digits),
            take_profit=rounded(target, spec.digits),
            expiration_ms=master_order.expiration_ms,
            label=inputs.label_of(inputs.key),
            client_order_id=client_order_id,
        )
    )
    link = plan.new_link(
        LinkStatus.OPENING, master_volume=master_order.volume, follower_volume=volume
    )
    plan.link = dataclasses.replace(
        link,
        fill_key=_fill_key(inputs, master_order),
        master_sl=master_order.stop_loss if dest.copy_sl_tp else None,
        master_tp=master_order.take_profit if dest.copy_sl_tp else None,
    )
    plan.note(
        "copy planned",
        "pending order",
        side=side.value,
        volume=volume,
        symbol=spec.name,
        price=price,
    )
    return None

"""Planning for a master position key ``p<P>`` (the semantics are listed in planner.py)."""

from __future__ import annotations

import dataclasses

from cmamd.accounts.model import Position, SymbolSpec
from cmamd.config.rules import CopyMode
from cmamd.item_keys import parse_key
from cmamd.protocol.units import round_price
from cmamd.replication.intents import (
    AmendPositionProtection,
    CancelPendingOrder,
    ClosePosition,
    KeyPlan,
    OpenPosition,
    Skip,
)
from cmamd.replication.links import LinkStatus
from cmamd.replication.mapping import map_symbol, symbol_tradable
from cmamd.replication.plan_common import (
    MARKET_KINDS,
    KeyInputs,
    PlanBuilder,
    follower_levels,
    follower_side,
    netted_conflict,
    not_ready,
    opening_blocked,
    relative_distance,
    rounded,
    short_selling,
    side_selected,
    sizing_context,
)
from cmamd.replication.sizing import floor_to_step, scale_volume, size_volume, volume_cap


def plan_position(inputs: KeyInputs) -> KeyPlan:
    plan = PlanBuilder(inputs)
    if inputs.dest.mode is CopyMode.FROZEN:
        return plan.build()
    master_position = inputs.master.positions.get(inputs.item_id)
    # Only ``origins`` says which order opened P: the order's own plan consults the same
    # mapping, so exactly one of the two keys owns what carries the order's label.
    origin = inputs.origins.get(inputs.key)
    # While the origin order is still pending on the master, what carries its label belongs
    # to the order's key; once it has ended, its copies are this position's.
    own = {inputs.label_of(inputs.key)}
    if origin is not None and not _pending_on_master(inputs, origin):
        own.add(inputs.label_of(origin))
    copies = sorted(
        (p for p in inputs.labelled.positions if p.label in own),
        key=lambda p: (p.open_ms, p.position_id),
    )
    orders = sorted((o for o in inputs.labelled.orders if o.label in own), key=lambda o: o.order_id)
    if master_position is not None and any(o.kind in MARKET_KINDS for o in orders):
        plan.note("copy waiting", "an order for this position is still executing on the follower")
        return plan.build()
    for order in orders:
        if order.kind not in MARKET_KINDS:
            # the follower's pending copy of the origin order, which the master no longer has
            cancel = CancelPendingOrder(
                inputs.target.follower_account_id, inputs.key, order.order_id
            )
            plan.add(cancel)
    if inputs.target.liquidate:
        _liquidate(plan, inputs, master_position, copies)
    elif master_position is None:
        _master_gone(plan, inputs, copies)
    else:
        _follow(plan, inputs, master_position, copies, origin, own)
    return plan.build()


def _pending_on_master(inputs: KeyInputs, order_key: str) -> bool:
    parsed = parse_key(order_key)
    return parsed is not None and parsed[1] in inputs.master.orders


def _close(plan: PlanBuilder, inputs: KeyInputs, copy: Position, volume: int) -> None:
    plan.add(ClosePosition(inputs.target.follower_account_id, inputs.key, copy.position_id, volume))


def _liquidate(
    plan: PlanBuilder, inputs: KeyInputs, master_position: Position | None, copies: list[Position]
) -> None:
    for copy in copies:
        _close(plan, inputs, copy, copy.volume)
    if copies:
        plan.note("copies closing", "equity stop", copies=len(copies))
    link = plan.link
    if link is None:
        if master_position is not None:
            plan.set_status(LinkStatus.SKIPPED, "equity stop")
        elif plan.intents:
            plan.set_status(LinkStatus.CLOSED, "equity stop")
    elif link.active and not copies:
        plan.set_status(LinkStatus.CLOSED, "equity stop")


def _master_gone(plan: PlanBuilder, inputs: KeyInputs, copies: list[Position]) -> None:
    for copy in copies:
        _close(plan, inputs, copy, copy.volume)
    link = plan.link
    if copies:
        plan.note("copies closing", "master position closed", copies=len(copies))
        if link is None:
            plan.set_status(LinkStatus.CLOSED, "master position closed while unlinked")
    elif link is not None and link.active:
        plan.set_status(LinkStatus.CLOSED, "master position closed")


def _follow(
    plan: PlanBuilder,
    inputs: KeyInputs,
    master_position: Position,
    copies: list[Position],
    origin: str | None,
    own: set[str],
) -> None:
    side = follower_side(inputs.dest, master_position.side)
    right = [c for c in copies if c.side is side]
    for copy in copies:
        if copy.side is not side:
            plan.note("copies closing", "wrong side for the rule", position_id=copy.position_id)
            _close(plan, inputs, copy, copy.volume)
    link = plan.link
    if not right:
        if link is None or link.status is LinkStatus.OPENING:
            _decide_open(plan, inputs, master_position, origin, own)
        elif link.status is LinkStatus.OPEN:
            # closed on the follower (its own SL/TP, a stop-out, by hand): never reopened
            plan.note("copy not reopened", "the copy was closed on the follower")
            plan.set_status(LinkStatus.CLOSED, "closed on the follower")
        return
    if link is None or not link.active:
        _adopt(plan, inputs, master_position, right, origin)
        return
    if link.status is LinkStatus.OPENING:
        plan.link = link.opened(inputs.now_ms)
    closed = _follow_volume(plan, inputs, master_position, right)
    _follow_levels(plan, inputs, master_position, [c for c in right if c.position_id not in closed])


def _skip(plan: PlanBuilder, inputs: KeyInputs, master_position: Position, skip: Skip) -> None:
    plan.note("copy skipped", skip.reason)
    plan.link = plan.new_link(LinkStatus.SKIPPED, skip.reason, master_volume=master_position.volume)


def _decide_open(
    plan: PlanBuilder,
    inputs: KeyInputs,
    master_position: Position,
    origin: str | None,
    own: set[str],
) -> None:
    dest = inputs.dest
    skip = opening_blocked(inputs) or side_selected(dest, master_position.side)
    if skip is not None:
        return _skip(plan, inputs, master_position, skip)
    waiting = not_ready(inputs, master_position.symbol_id)
    if waiting is not None:
        return plan.note("copy waiting", waiting)
    age_ms = inputs.now_ms - master_position.open_ms
    existing = master_position.open_ms < inputs.target.started_ms
    if existing and not dest.copy_existing:
        reason = (
            "it was already open when this copy started (or came back from frozen) "
            "and copy_existing is off"
        )
        return _skip(plan, inputs, master_position, Skip(reason))
    if age_ms > dest.max_delay_s * 1000 and not existing:
        return _skip(
            plan,
            inputs,
            master_position,
            Skip(f"opened {age_ms / 1000:.1f}s ago, beyond max_delay_s={dest.max_delay_s:g}"),
        )
    master_spec = inputs.master.symbols_by_id[master_position.symbol_id]
    spec = map_symbol(dest.symbols, master_spec.name, inputs.follower.symbols_by_name)
    if isinstance(spec, Skip):
        return _skip(plan, inputs, master_position, spec)
    side = follower_side(dest, master_position.side)
    skip = short_selling(spec, side) or netted_conflict(inputs, spec, own)
    if skip is not None:
        return _skip(plan, inputs, master_position, skip)
    context = sizing_context(
        inputs,
        spec,
        master_position.entry_price,
        master_position.stop_loss,
        master_position.take_profit,
    )
    volume = size_volume(dest.volume, master_position.volume, master_spec, spec, context)
    if isinstance(volume, Skip):
        return _skip(plan, inputs, master_position, volume)

    relative_sl, relative_tp = _relative_levels(inputs, master_position, spec)
    base_price = None
    if dest.slippage_points is not None:
        base_price = round_price(master_position.entry_price, spec.digits)
    client_order_id = plan.next_client_order_id()
    plan.add(
        OpenPosition(
            follower_account_id=inputs.target.follower_account_id,
            key=inputs.key,
            symbol_id=spec.symbol_id,
            side=side,
            volume=volume,
            relative_stop_loss=relative_sl,
            relative_take_profit=relative_tp,
            label=inputs.label_of(inputs.key),
            client_order_id=client_order_id,
            slippage_points=dest.slippage_points,
            base_price=base_price,
        )
    )
    # Record only the master levels the copy really mirrors: one that a distance from entry
    # cannot express stays "not mirrored", so the next plan sets it by an amend.
    master_sl, master_tp = master_position.stop_loss, master_position.take_profit
    copy_sl_of, copy_tp_of = relative_sl, relative_tp
    if dest.reverse:
        copy_sl_of, copy_tp_of = relative_tp, relative_sl
    link = plan.new_link(
        LinkStatus.OPENING, master_volume=master_position.volume, follower_volume=volume
    )
    plan.link = dataclasses.replace(
        link,
        origin_key=origin,
        master_sl=master_sl if dest.copy_sl_tp and copy_sl_of is not None else None,
        master_tp=master_tp if dest.copy_sl_tp and copy_tp_of is not None else None,
    )
    plan.note("copy planned", "open", side=side.value, volume=volume, symbol=spec.name)


def _relative_levels(
    inputs: KeyInputs, master_position: Position, spec: SymbolSpec
) -> tuple[int | None, int | None]:
    if not inputs.dest.copy_sl_tp:
        return None, None
    side = follower_side(inputs.dest, master_position.side)
    stop, target = follower_levels(
        inputs.dest, master_position.stop_loss, master_position.take_profit
    )
    entry = master_position.entry_price
    return (
        relative_distance(entry, stop, side, True, spec.digits),
        relative_distance(entry, target, side, False, spec.digits),
    )


def _adopt(
    plan: PlanBuilder,
    inputs: KeyInputs,
    master_position: Position,
    copies: list[Position],
    origin: str | None,
) -> None:
    volume = sum(c.volume for c in copies)
    plan.note("copies adopted", "found on the follower", copies=len(copies), volume=volume)
    basis = (master_position.volume, volume)
    # Filled copies of the origin order were sized on that order's basis; the master may
    # have amended the order (while the daemon was away) before both filled: keep the basis
    # so that the volume is corrected below, not frozen at the old size.
    origin_link = inputs.link_of(origin) if origin is not None else None
    if (
        origin_link is not None
        and origin_link.master_volume > 0
        and origin_link.follower_volume > 0
        and any(c.label == inputs.label_of(origin_link.key) for c in copies)
    ):
        basis = (origin_link.master_volume, origin_link.follower_volume)
    link = plan.new_link(LinkStatus.OPEN, master_volume=basis[0], follower_volume=basis[1])
    plan.link = dataclasses.replace(link, origin_key=origin)
    # what was mirrored before the state was lost is unknown: compare with the copies
    if inputs.dest.copy_sl_tp:
        _amend_levels(plan, inputs, master_position, copies)
    if basis != (master_position.volume, volume):
        _follow_volume(plan, inputs, master_position, copies)


def _follow_volume(
    plan: PlanBuilder, inputs: KeyInputs, master_position: Position, copies: list[Position]
) -> set[int]:
    """Converge the copies' total volume on the master's; returns fully closed copies."""
    link = plan.held_link()
    spec = inputs.follower.symbols_by_id.get(copies[0].symbol_id)
    if spec is None:
        plan.note(
            "copy not followed",
            "follower symbol not loaded; volume not followed",
            symbol_id=copies[0].symbol_id,
        )
        return set()
    current = sum(c.volume for c in copies)
    due = scale_volume(link.follower_volume, link.master_volume, master_position.volume, spec)
    if due > current:
        cap = volume_cap(inputs.dest.volume, spec)
        if cap is not None:
            due = max(current, min(due, cap))
    if due < current:
        return _reduce(plan, inputs, copies, current - due, spec)
    if due > current:
        _increase(plan, inputs, master_position, spec, due - current)
    return set()


def _reduce(
    plan: PlanBuilder, inputs: KeyInputs, copies: list[Position], excess: int, spec: SymbolSpec
) -> set[int]:
    closed: set[int] = set()
    reduced = 0
    for copy in reversed(copies):  # the newest first
        if excess <= 0:
            break
        if excess >= copy.volume:
            volume = copy.volume
        else:
            volume = floor_to_step(excess, spec.step_volume)
            if volume <= 0:
                break
            if copy.volume - volume < spec.min_volume:
                # a remainder below the minimum cannot stay open: close the whole copy (the
                # shortfall is below the minimum too, so it is not reopened)
                volume = copy.volume
        _close(plan, inputs, copy, volume)
        if volume == copy.volume:
            closed.add(copy.position_id)
        reduced += volume
        excess -= volume
    if reduced:
        plan.note("copies closing", "master volume reduced", volume=reduced)
    return closed


def _increase(
    plan: PlanBuilder,
    inputs: KeyInputs,
    master_position: Position,
    spec: SymbolSpec,
    missing: int,
) -> None:
    if inputs.dest.mode is not CopyMode.ON:
        return plan.note("copy not increased", f"mode {inputs.dest.mode.value}")
    volume = floor_to_step(missing, spec.step_volume)
    if volume < max(spec.min_volume, 1):
        return None
    blocked = symbol_tradable(spec)
    if blocked is not None:
        return plan.note("copy not increased", blocked.reason)
    # a plain market order: a range around the master's average entry would keep failing
    relative_sl, relative_tp = _relative_levels(inputs, master_position, spec)
    client_order_id = plan.next_client_order_id()
    plan.add(
        OpenPosition(
            follower_account_id=inputs.target.follower_account_id,
            key=inputs.key,
            symbol_id=spec.symbol_id,
            side=follower_side(inputs.dest, master_position.side),
            volume=volume,
            relative_stop_loss=relative_sl,
            relative_take_profit=relative_tp,
            label=inputs.label_of(inputs.key),
            client_order_id=client_order_id,
        )
    )
    plan.note("copy planned", "master volume increased", volume=volume)
    return None


def _follow_levels(
    plan: PlanBuilder, inputs: KeyInputs, master_position: Position, copies: list[Position]
) -> None:
    link = plan.held_link()
    if not inputs.dest.copy_sl_tp:
        return
    mirrored = (master_position.stop_loss, master_position.take_profit)
    if link.levels_confirmed and mirrored == (link.master_sl, link.master_tp):
        return
    # the levels changed, or an amend was decided but never seen done (a crash before or
    # after it left, a refusal): compare with the copies as the broker reports them
    _amend_levels(plan, inputs, master_position, copies)


def _amend_levels(
    plan: PlanBuilder, inputs: KeyInputs, master_position: Position, copies: list[Position]
) -> None:
    """Set the copies' levels to the master's (absolute), where they differ; record them,
    confirmed once no copy differs any more."""
    stop, target = follower_levels(
        inputs.dest, master_position.stop_loss, master_position.take_profit
    )
    for copy in copies:
        spec = inputs.follower.symbols_by_id.get(copy.symbol_id)
        if spec is None:
            plan.note(
                "copy not followed",
                "follower symbol not loaded; levels not followed",
                symbol_id=copy.symbol_id,
            )
            return
        desired = (rounded(stop, spec.digits), rounded(target, spec.digits))
        actual = (rounded(copy.stop_loss, spec.digits), rounded(copy.take_profit, spec.digits))
        if desired != actual:
            plan.add(
                AmendPositionProtection(
                    inputs.target.follower_account_id, inputs.key, copy.position_id, *desired
                )
            )
    link = plan.held_link()
    amended = any(isinstance(i, AmendPositionProtection) for i in plan.intents)
    mirrored = link.mirrored(
        master_position.stop_loss, master_position.take_profit, inputs.now_ms, not amended
    )
    # unchanged but for the time stamp: nothing to persist
    if dataclasses.replace(mirrored, updated_ms=link.updated_ms) != link:
        plan.link = mirrored

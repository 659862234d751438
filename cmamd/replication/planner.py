"""The copy planner: state in, intents out.

For one copy target (a rule destination bound to a master and a follower account) and one
master item key, ``plan_key`` looks at what the master holds, what the follower holds and
the item's persisted link, and returns the intents that make the follower converge on what
the rule prescribes, plus the link to persist BEFORE sending them. The same function serves
live copying (the one key an event touched) and reconciliation after a start or reconnect
(``plan_all``: every key). The executor guarantees that nothing is in flight for the
(follower, key) being planned and that the follower state is fresh.

Semantics
---------
Keys: ``p<P>`` (master position P), ``o<O>`` (master pending order O). Copies carry the label
``cm:<master>:<key>``. ``origins`` maps ``p<P>`` to the ``o<O>`` that opened P; build it with
``origins_for`` (links + master pending orders + what the executor saw in fill events).

Copies of ``p<P>``: follower positions labelled ``p<P>``, or labelled ``o<O>`` with O its
origin once O is no longer pending on the master (the follower's pending copy may have
filled on its own). While O is pending, what carries its label belongs to ``o<O>``.

- mode ``frozen``: nothing at all; its return moves the destination's start to that moment
  (``replication/routes_from_config.py``), so what the master opened meanwhile predates it.
  ``liquidate`` (equity stop): close every copy, cancel every pending copy, and never open
  again (links end SKIPPED/CLOSED "equity stop").
- Master position, no link: filters decide once, recording a SKIPPED link with the reason
  (logged once, never reopened later): mode ``close_only``, ``sides`` (on the master's side),
  symbol include/exclude and mapping, age (older than ``max_delay_s`` unless ``copy_existing``
  and it predates the destination's start), short selling, netting (below), sizing. Else an
  OpenPosition (side reversed when ``reverse``; SL/TP as distances from the master's entry,
  swapped when reversed, only with ``copy_sl_tp``; with ``slippage_points`` a market-range
  order around the master's entry) and a link OPENING with the basis (master volume, copy
  volume) and the master levels mirrored.
- Link OPENING/OPEN with copies: the due volume is ``scale_volume(basis, master now)``
  (capped by maxVolume/max_lots when growing). Below it and mode ``on``: open the difference
  (same label; a netted follower's position grows) as a plain market order. Above it: close
  the difference, whole copies first when the target is 0, otherwise from the newest copy; a
  remainder below the symbol minimum closes that copy. Master SL/TP different from the
  link's: amend every copy to the master's absolute levels (swapped when reversed, rounded
  to the follower's digits) and record them. OPENING becomes OPEN once a copy is seen.
- Link OPENING without copies (the open did not happen and the executor did not mark it
  REJECTED): decided again like a new item, age limit included.
- Link OPEN without copies while the master position is open: the copy was closed on the
  follower (its own SL/TP, a stop-out, by hand): the link is CLOSED, nothing is reopened.
- Copies but no link (state lost), or a SKIPPED/REJECTED/CLOSED link with copies: the copies
  are adopted (link OPEN, basis = master volume and the copies' volume, their levels set to
  the master's where they differ) and followed from then on.
- Copies on the wrong side for the rule (the rule's ``reverse`` changed) are closed.
- Master position gone: close every copy; an active link becomes CLOSED once nothing is
  left. Copies with neither master item nor link (closed while away) are closed too.
- Pending order ``o<O>`` still pending on the master, ``copy_pending``, mode ``on``, order
  kind LIMIT or STOP, not an order on an already open position, not predating the start
  (unless ``copy_existing``): a follower pending order labelled ``o<O>`` on the mapped
  symbol, sized, at the same price rounded to the follower's digits (reversed: side flipped,
  LIMIT <-> STOP, SL <-> TP), same expiration. A copy that differs (master amended, volume
  scaled) is amended; in ``close_only`` it may shrink, never grow; duplicates are cancelled.
  A copy cancelled on the follower is not placed again.
- Master order no longer pending: if the position it became is known, that position's key
  takes over (cancels the follower's still-pending copy and opens a market copy instead —
  the position is fresh, so within ``max_delay_s`` — or adopts the copy that filled);
  otherwise the copies are cancelled and filled ones closed.

Netting: a netted follower holds one position per symbol, so an item whose follower symbol
already holds (or is being opened for) another item, or a position not made by cmamd, is
SKIPPED with that reason instead of mixing volumes. A netted master needs nothing special:
its one position per symbol changes volume and its key follows it. A master position
that changes side has its copies closed; with an active link the new side is not opened.

Every plan converges in one step: planning again on the state that results from executing
it yields no intents. The one exception is deliberate: a master level that a distance from
the entry cannot express (a stop already in profit) is set by an amend once the copy exists.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from cmamd.accounts.model import AccountState
from cmamd.item_keys import (
    ItemKind,
    is_order_key,
    is_position_key,
    order_key,
    parse_key,
    position_key,
    split_key,
)
from cmamd.replication import input_guard
from cmamd.replication.intents import KeyPlan, OpenPosition, PlacePendingOrder
from cmamd.replication.labels import parse_label
from cmamd.replication.links import Link
from cmamd.replication.order_plan import plan_order
from cmamd.replication.plan_common import MARKET_KINDS, CopyTarget, KeyInputs, QuoteToDeposit
from cmamd.replication.position_plan import plan_position

__all__ = ["CopyTarget", "QuoteToDeposit", "keys_for", "origins_for", "plan_all", "plan_key"]


def origins_for(
    master: AccountState, links: Iterable[Link], known: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``p<P>`` -> ``o<O>`` for positions opened (or to be opened) by a pending order.

    Sources, weakest first: the master's pending orders (their position id), pending-order
    links (``fill_key``), position links (``origin_key``), then ``known`` (fill events).
    """
    origins: dict[str, str] = {}
    for order in master.orders.values():
        pid = order.position_id
        if pid and order.kind not in MARKET_KINDS and pid not in master.positions:
            origins[position_key(pid)] = order_key(order.order_id)
    links = list(links)
    open_keys = {position_key(pid) for pid in master.positions}
    for link in links:
        # A fill_key is the position the order *would* fill into; it is an origin only once
        # that position exists: a cancelled or expired order handed nothing over.
        if link.fill_key in open_keys and is_order_key(link.key):
            origins[link.fill_key] = link.key
    for link in links:
        if link.origin_key is not None and is_position_key(link.key):
            origins[link.key] = link.origin_key
    origins.update(known or {})
    return origins


def keys_for(
    target: CopyTarget,
    master: AccountState,
    follower: AccountState,
    links: Mapping[str, Link] | Iterable[Link],
    origins: Mapping[str, str] | None = None,
) -> list[str]:
    """Every key that may need work: the master's items, the follower's items labelled for
    this master (and the position an ended order's copies passed to), active links."""
    by_key = _by_key(links)
    if origins is None:
        origins = origins_for(master, by_key.values())
    keys = {position_key(pid) for pid in master.positions}
    keys |= {order_key(o.order_id) for o in master.orders.values() if o.kind not in MARKET_KINDS}
    owner_of = {origin: position for position, origin in origins.items()}
    labels = [p.label for p in follower.positions.values()]
    labels += [o.label for o in follower.orders.values()]
    for text in labels:
        parsed = parse_label(text)
        if parsed is None or parsed[0] != target.master_account_id:
            continue
        key = parsed[1]
        keys.add(key)
        parsed_key = parse_key(key)
        ended = parsed_key is not None and parsed_key[1] not in master.orders
        if ended and is_order_key(key) and key in owner_of:
            keys.add(owner_of[key])
    keys |= {key for key, link in by_key.items() if link.active}
    return sorted(filter(input_guard.is_item_key, keys), key=_key_order)


def _by_key(links: Mapping[str, Link] | Iterable[Link]) -> Mapping[str, Link]:
    if isinstance(links, Mapping):
        return links
    return {link.key: link for link in links}


def _key_order(key: str) -> tuple[int, int]:
    kind, item_id = split_key(key)
    return (0 if kind is ItemKind.POSITION else 1, item_id)


def plan_key(
    target: CopyTarget,
    key: str,
    master: AccountState,
    follower: AccountState,
    link: Link | None,
    now_ms: int,
    origins: Mapping[str, str],
    quote_to_deposit: QuoteToDeposit,
    busy_symbols: Collection[int] = frozenset(),
    link_of: Callable[[str], Link | None] | None = None,
) -> KeyPlan:
    """The plan for one key.

    ``origins`` must be one mapping for every key of the target — build it with
    ``origins_for(master, <all of the target's links>, <origins seen in fill events>)`` —
    because a position key and the order key that opened it decide from it which of them
    owns the follower items labelled with the order. ``busy_symbols``: follower symbol ids
    an open or placement for another key is in flight on (a netted follower must not mix
    two items in one position). ``link_of``: the link of another key of the target (a
    position adopting its origin order's filled copies sizes them from that order's basis).
    """
    refused = input_guard.refusal(key, master, follower, origins)
    if refused is not None:
        return KeyPlan(key, notes=[refused])
    kind, item_id = split_key(key)
    if link is not None and (
        link.key != key
        or link.rule != target.rule
        or link.master_account_id != target.master_account_id
        or link.follower_account_id != target.follower_account_id
    ):
        raise ValueError(f"link {link.rule}/{link.key} does not belong to {target.rule}/{key}")
    if master.account_id != target.master_account_id:
        raise ValueError(f"master state is account {master.account_id}")
    if follower.account_id != target.follower_account_id:
        raise ValueError(f"follower state is account {follower.account_id}")
    inputs = KeyInputs(
        target=target,
        key=key,
        item_id=item_id,
        master=master,
        follower=follower,
        link=link,
        now_ms=now_ms,
        origins=origins,
        quote_to_deposit=quote_to_deposit,
        busy_symbols=busy_symbols,
        **({"link_of": link_of} if link_of is not None else {}),
    )
    return plan_position(inputs) if kind is ItemKind.POSITION else plan_order(inputs)


def plan_all(
    target: CopyTarget,
    master: AccountState,
    follower: AccountState,
    links: Mapping[str, Link] | Iterable[Link],
    now_ms: int,
    origins: Mapping[str, str],
    quote_to_deposit: QuoteToDeposit,
) -> list[KeyPlan]:
    """Plans for every key (reconciliation); plans with nothing to do or say are left out.

    ``links``: this target's links by key. ``origins``: what fill events told (merged with
    ``origins_for``). Keys are planned in a fixed order (positions, then orders, by id), so
    that on a netted follower the first item to claim a symbol keeps it.
    """
    by_key = _by_key(links)
    all_origins = origins_for(master, by_key.values(), origins)
    busy: set[int] = set()
    plans: list[KeyPlan] = []
    for key in keys_for(target, master, follower, by_key, all_origins):
        plan = plan_key(
            target,
            key,
            master,
            follower,
            by_key.get(key),
            now_ms,
            all_origins,
            quote_to_deposit,
            frozenset(busy),
        )
        for intent in plan.intents:
            if isinstance(intent, OpenPosition | PlacePendingOrder):
                busy.add(intent.symbol_id)
        if not plan.empty:
            plans.append(plan)
    return plans

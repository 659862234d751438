"""Builders for the pure copy-logic tests, and a tiny in-memory broker that applies intents.

The broker does what the real one does to a follower's state for each intent, so a test can
plan, "execute", and plan again to check that the plan converged.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from cmamd.accounts.model import (
    AccountKind,
    AccountState,
    OrderKind,
    PendingOrder,
    Position,
    Side,
    SymbolSpec,
    TraderInfo,
)
from cmamd.config.rules import Destination
from cmamd.protocol.units import PRICE_SCALE
from cmamd.replication.intents import (
    AmendPendingOrder,
    AmendPositionProtection,
    CancelPendingOrder,
    ClosePosition,
    Intent,
    KeyPlan,
    OpenPosition,
    PlacePendingOrder,
)
from cmamd.replication.labels import label
from cmamd.replication.links import Link
from cmamd.replication.planner import CopyTarget, plan_all, plan_key

M = 1001  # master account id
F = 2002  # follower account id
STARTED_MS = 1_700_000_000_000
NOW_MS = STARTED_MS + 3_600_000

FX_LOT = 10_000_000  # 100,000 units in cents
EURUSD = SymbolSpec(1, "EURUSD", 5, 4, FX_LOT, 100_000, 100_000, 1_000_000_000)
XAUUSD = SymbolSpec(2, "XAUUSD", 2, 1, 10_000, 100, 100, 10_000_000)
US30 = SymbolSpec(3, "US30", 1, 0, 100, 10, 10, 100_000)
# the follower's broker numbers and names symbols its own way
F_EURUSD = dataclasses.replace(EURUSD, symbol_id=11, name="EURUSD.m")
F_GOLD = dataclasses.replace(XAUUSD, symbol_id=12, name="GOLD")
F_US30 = dataclasses.replace(US30, symbol_id=13, name="US30.m")


def account(
    account_id: int,
    symbols: Iterable[SymbolSpec],
    *,
    kind: AccountKind = AccountKind.HEDGED,
    balance: str = "10000",
    positions: Iterable[Position] = (),
    orders: Iterable[PendingOrder] = (),
) -> AccountState:
    specs = list(symbols)
    return AccountState(
        account_id=account_id,
        trader=TraderInfo(account_id, Decimal(balance), 2, kind),
        symbols_by_id={s.symbol_id: s for s in specs},
        symbols_by_name={s.name: s for s in specs},
        positions={p.position_id: p for p in positions},
        orders={o.order_id: o for o in orders},
    )


def master(*items: Position | PendingOrder, balance: str = "10000", **kw: Any) -> AccountState:
    return account(
        M,
        [EURUSD, XAUUSD, US30],
        balance=balance,
        positions=[i for i in items if isinstance(i, Position)],
        orders=[i for i in items if isinstance(i, PendingOrder)],
        **kw,
    )


def follower(*items: Position | PendingOrder, balance: str = "10000", **kw: Any) -> AccountState:
    return account(
        F,
        [F_EURUSD, F_GOLD, F_US30],
        balance=balance,
        positions=[i for i in items if isinstance(i, Position)],
        orders=[i for i in items if isinstance(i, PendingOrder)],
        **kw,
    )


def position(
    position_id: int,
    volume: int,
    *,
    symbol_id: int = EURUSD.symbol_id,
    side: Side = Side.BUY,
    entry: float = 1.1,
    sl: float | None = None,
    tp: float | None = None,
    opened_ms: int = NOW_MS - 1_000,
    text: str = "",
) -> Position:
    return Position(
        position_id, symbol_id, side, volume, entry, sl, tp, label=text, open_ms=opened_ms
    )


def copy_of(key: str, position_id: int, volume: int, **kw: Any) -> Position:
    """A follower position labelled as a copy of master item ``key``."""
    kw.setdefault("symbol_id", F_EURUSD.symbol_id)
    return position(position_id, volume, text=label(M, key), **kw)


def order(
    order_id: int,
    volume: int,
    *,
    kind: OrderKind = OrderKind.LIMIT,
    symbol_id: int = EURUSD.symbol_id,
    side: Side = Side.BUY,
    price: float = 1.09,
    sl: float | None = None,
    tp: float | None = None,
    expiration_ms: int | None = None,
    position_id: int | None = None,
    updated_ms: int = NOW_MS - 1_000,
    text: str = "",
) -> PendingOrder:
    return PendingOrder(
        order_id,
        symbol_id,
        side,
        kind,
        volume,
        limit_price=price if kind is OrderKind.LIMIT else None,
        stop_price=price if kind is not OrderKind.LIMIT else None,
        stop_loss=sl,
        take_profit=tp,
        expiration_ms=expiration_ms,
        label=text,
        position_id=position_id,
        updated_ms=updated_ms,
    )


def order_copy(key: str, order_id: int, volume: int, **kw: Any) -> PendingOrder:
    kw.setdefault("symbol_id", F_EURUSD.symbol_id)
    return order(order_id, volume, text=label(M, key), **kw)


DEFAULT_SYMBOLS = {"map": {"XAUUSD": "GOLD"}, "add_suffix": ".m"}


def target(*, liquidate: bool = False, started_ms: int = STARTED_MS, **dest: Any) -> CopyTarget:
    dest.setdefault("symbols", DEFAULT_SYMBOLS)
    return CopyTarget(
        rule="main",
        dest=Destination.model_validate({"account": "follower", **dest}),
        master_account_id=M,
        follower_account_id=F,
        started_ms=started_ms,
        liquidate=liquidate,
    )


def no_rate(_: SymbolSpec) -> Decimal | None:
    return None


def plan(
    tgt: CopyTarget,
    key: str,
    master_state: AccountState,
    follower_state: AccountState,
    link: Link | None = None,
    *,
    now_ms: int = NOW_MS,
    origins: Mapping[str, str] | None = None,
) -> KeyPlan:
    return plan_key(tgt, key, master_state, follower_state, link, now_ms, origins or {}, no_rate)


class Broker:
    """Applies intents to a follower state the way the server would (fills at ``price``)."""

    def __init__(self, state: AccountState, *, price: float = 1.1, first_id: int = 900) -> None:
        self.state = state
        self.price = price
        self._ids = itertools.count(first_id)
        self.applied: list[Intent] = []

    def apply(self, intents: Iterable[Intent], now_ms: int = NOW_MS) -> None:
        for intent in intents:
            self.applied.append(intent)
            getattr(self, "_" + type(intent).__name__)(intent, now_ms)

    def _OpenPosition(self, intent: OpenPosition, now_ms: int) -> None:
        netted = self.state.trader is not None and self.state.trader.kind is AccountKind.NETTED
        existing = [p for p in self.state.positions.values() if p.symbol_id == intent.symbol_id]
        if netted and existing:
            held = existing[0]
            assert held.side is intent.side, "the planner never nets opposite sides"
            grown = dataclasses.replace(held, volume=held.volume + intent.volume)
            self.state.positions[held.position_id] = grown
            return
        sign = 1 if intent.side is Side.BUY else -1
        sl = tp = None
        if intent.relative_stop_loss is not None:
            sl = round(self.price - sign * intent.relative_stop_loss / PRICE_SCALE, 5)
        if intent.relative_take_profit is not None:
            tp = round(self.price + sign * intent.relative_take_profit / PRICE_SCALE, 5)
        new_id = next(self._ids)
        self.state.positions[new_id] = Position(
            new_id,
            intent.symbol_id,
            intent.side,
            intent.volume,
            self.price,
            sl,
            tp,
            label=intent.label,
            open_ms=now_ms,
        )

    def _ClosePosition(self, intent: ClosePosition, now_ms: int) -> None:
        held = self.state.positions[intent.position_id]
        assert 0 < intent.volume <= held.volume
        if intent.volume == held.volume:
            del self.state.positions[intent.position_id]
        else:
            remaining = dataclasses.replace(held, volume=held.volume - intent.volume)
            self.state.positions[intent.position_id] = remaining

    def _AmendPositionProtection(self, intent: AmendPositionProtection, now_ms: int) -> None:
        held = self.state.positions[intent.position_id]
        self.state.positions[intent.position_id] = dataclasses.replace(
            held, stop_loss=intent.stop_loss, take_profit=intent.take_profit
        )

    def _PlacePendingOrder(self, intent: PlacePendingOrder, now_ms: int) -> None:
        new_id = next(self._ids)
        self.state.orders[new_id] = PendingOrder(
            new_id,
            intent.symbol_id,
            intent.side,
            intent.kind,
            intent.volume,
            limit_price=intent.price if intent.kind is OrderKind.LIMIT else None,
            stop_price=intent.price if intent.kind is OrderKind.STOP else None,
            stop_loss=intent.stop_loss,
            take_profit=intent.take_profit,
            expiration_ms=intent.expiration_ms,
            label=intent.label,
            client_order_id=intent.client_order_id,
            updated_ms=now_ms,
        )

    def _AmendPendingOrder(self, intent: AmendPendingOrder, now_ms: int) -> None:
        held = self.state.orders[intent.order_id]
        is_limit = held.kind is OrderKind.LIMIT
        self.state.orders[intent.order_id] = dataclasses.replace(
            held,
            volume=intent.volume,
            limit_price=intent.price if is_limit else None,
            stop_price=None if is_limit else intent.price,
            stop_loss=intent.stop_loss,
            take_profit=intent.take_profit,
            expiration_ms=intent.expiration_ms,
        )

    def _CancelPendingOrder(self, intent: CancelPendingOrder, now_ms: int) -> None:
        del self.state.orders[intent.order_id]


def converge(
    tgt: CopyTarget,
    master_state: AccountState,
    broker: Broker,
    links: dict[str, Link],
    *,
    now_ms: int = NOW_MS,
    origins: Mapping[str, str] | None = None,
) -> list[KeyPlan]:
    """One reconciliation round: plan every key, persist links, execute every intent."""
    plans = plan_all(tgt, master_state, broker.state, links, now_ms, origins or {}, no_rate)
    for key_plan in plans:
        if key_plan.link is not None:
            links[key_plan.key] = key_plan.link
        broker.apply(key_plan.intents, now_ms)
    return plans


def intents_of(plans: Iterable[KeyPlan]) -> list[Intent]:
    return [intent for key_plan in plans for intent in key_plan.intents]

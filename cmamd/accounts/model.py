"""Plain, immutable views of what an account holds, decoupled from protobuf.

The account session converts server messages into these; the copy logic consumes only
these, so it is tested without sockets or protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderKind(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    MARKET_RANGE = "market_range"


class AccountKind(StrEnum):
    HEDGED = "hedged"
    NETTED = "netted"
    SPREAD_BETTING = "spread_betting"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Trading constraints of one symbol on one account's broker (volumes in cents)."""

    symbol_id: int
    name: str
    digits: int
    pip_position: int
    lot_size: int
    min_volume: int
    step_volume: int
    max_volume: int
    enabled: bool = True
    close_only: bool = False
    short_selling: bool = True


@dataclass(frozen=True, slots=True)
class Quote:
    bid: float
    ask: float


@dataclass(frozen=True, slots=True)
class Position:
    position_id: int
    symbol_id: int
    side: Side
    volume: int
    entry_price: float
    stop_loss: float | None = None
    take_profit: float | None = None
    label: str = ""
    comment: str = ""
    open_ms: int = 0
    updated_ms: int = 0
    swap: int = 0
    commission: int = 0


@dataclass(frozen=True, slots=True)
class PendingOrder:
    order_id: int
    symbol_id: int
    side: Side
    kind: OrderKind
    volume: int
    limit_price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    expiration_ms: int | None = None
    label: str = ""
    client_order_id: str = ""
    position_id: int | None = None
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class TraderInfo:
    account_id: int
    balance: Decimal
    money_digits: int
    kind: AccountKind
    leverage_in_cents: int = 0
    trading_allowed: bool = True
    deposit_asset: str = ""
    broker: str = ""
    is_live: bool = False
    deposit_asset_id: int = 0  # what conversions are found by (names differ per broker)

    def with_balance(self, balance: Decimal) -> TraderInfo:
        """This account with a new balance (every close's deal carries one): positional,
        as ``dataclasses.replace`` costs several times more."""
        return TraderInfo(
            self.account_id,
            balance,
            self.money_digits,
            self.kind,
            self.leverage_in_cents,
            self.trading_allowed,
            self.deposit_asset,
            self.broker,
            self.is_live,
            self.deposit_asset_id,
        )


@dataclass(slots=True)
class AccountState:
    """What one account holds now; mutated only by the account's own session task."""

    account_id: int
    trader: TraderInfo | None = None
    symbols_by_id: dict[int, SymbolSpec] = field(default_factory=dict)
    symbols_by_name: dict[str, SymbolSpec] = field(default_factory=dict)
    positions: dict[int, Position] = field(default_factory=dict)
    orders: dict[int, PendingOrder] = field(default_factory=dict)
    unrealized_pnl: Decimal = Decimal(0)

    @property
    def equity(self) -> Decimal | None:
        if self.trader is None:
            return None
        return self.trader.balance + self.unrealized_pnl

"""What the simulated broker shows of an account, as plain values for tests and the demo.

The simulator's own reading of the protocol, kept apart from the daemon's models on
purpose: a test compares the daemon's view of an account with this one, so the two must
not share code (a mistake in one would otherwise hide in both).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from cmamd.protocol.proto import model_pb2


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.BUY if self is Side.SELL else Side.SELL

    @property
    def wire(self) -> model_pb2.ProtoOATradeSide:
        return model_pb2.BUY if self is Side.BUY else model_pb2.SELL

    @staticmethod
    def from_wire(side: model_pb2.ProtoOATradeSide) -> Side:
        if side == model_pb2.BUY:
            return Side.BUY
        if side == model_pb2.SELL:
            return Side.SELL
        raise ValueError(f"trade side {side} is neither BUY nor SELL")


class OrderKind(StrEnum):
    """ProtoOAOrderType, one member per protocol value."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LOSS_TAKE_PROFIT = "stop_loss_take_profit"
    MARKET_RANGE = "market_range"
    STOP_LIMIT = "stop_limit"

    @staticmethod
    def from_wire(order_type: model_pb2.ProtoOAOrderType) -> OrderKind:
        # The protocol's value names, lower-cased, are the members' values.
        return OrderKind(model_pb2.ProtoOAOrderType.Name(order_type).lower())


class AccountKind(StrEnum):
    HEDGED = "hedged"
    NETTED = "netted"


@dataclass(frozen=True, slots=True)
class Position:
    position_id: int
    symbol_id: int
    side: Side
    volume: int  # cents of a unit, as on the wire
    entry_price: float
    stop_loss: float | None
    take_profit: float | None
    label: str
    comment: str
    open_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class PendingOrder:
    order_id: int
    symbol_id: int
    side: Side
    kind: OrderKind
    volume: int
    limit_price: float | None
    stop_price: float | None
    stop_loss: float | None
    take_profit: float | None
    expiration_ms: int | None
    label: str
    client_order_id: str
    position_id: int | None
    updated_ms: int


@dataclass(frozen=True, slots=True)
class TraderInfo:
    account_id: int
    balance: Decimal
    money_digits: int
    kind: AccountKind
    leverage_in_cents: int
    trading_allowed: bool
    deposit_asset: str
    broker: str
    is_live: bool

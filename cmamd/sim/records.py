"""The engine's mutable records of accounts, orders, positions and deals.

Sides, order types and statuses use the protocol's enum numbers (``model_pb2.BUY``...), so
turning a record into its protobuf snapshot is a plain copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cmamd.protocol.proto import model_pb2
from cmamd.sim.config import AccountConfig


def opposite(side: model_pb2.ProtoOATradeSide) -> model_pb2.ProtoOATradeSide:
    return model_pb2.SELL if side == model_pb2.BUY else model_pb2.BUY


@dataclass(slots=True)
class SimPosition:
    position_id: int
    account_id: int
    symbol_id: int
    side: model_pb2.ProtoOATradeSide
    volume: int
    status: model_pb2.ProtoOAPositionStatus
    price: float = 0.0
    """Volume-weighted entry price; 0 while the position is an empty CREATED placeholder."""
    stop_loss: float | None = None
    take_profit: float | None = None
    label: str = ""
    comment: str = ""
    open_ms: int = 0
    updated_ms: int = 0
    close_ms: int | None = None


@dataclass(slots=True)
class SimOrder:
    order_id: int
    account_id: int
    symbol_id: int
    side: model_pb2.ProtoOATradeSide
    order_type: model_pb2.ProtoOAOrderType
    volume: int
    time_in_force: model_pb2.ProtoOATimeInForce
    created_ms: int
    updated_ms: int
    status: model_pb2.ProtoOAOrderStatus = model_pb2.ORDER_STATUS_ACCEPTED
    limit_price: float | None = None
    stop_price: float | None = None
    expiration_ms: int | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    relative_stop_loss: int | None = None
    relative_take_profit: int | None = None
    base_slippage_price: float | None = None
    slippage_in_points: int | None = None
    label: str = ""
    comment: str = ""
    client_order_id: str = ""
    position_id: int | None = None
    closing_order: bool = False
    executed_volume: int = 0
    execution_price: float | None = None

    @property
    def trigger_price(self) -> float | None:
        return self.limit_price if self.order_type == model_pb2.LIMIT else self.stop_price


@dataclass(slots=True)
class CloseDetail:
    entry_price: float
    gross_profit: int
    balance: int
    balance_version: int
    closed_volume: int
    quote_to_deposit: float


@dataclass(slots=True)
class SimDeal:
    deal_id: int
    order_id: int
    position_id: int
    account_id: int
    symbol_id: int
    side: model_pb2.ProtoOATradeSide
    volume: int
    filled_volume: int
    price: float
    created_ms: int
    executed_ms: int
    close_detail: CloseDetail | None = None


@dataclass(slots=True)
class SimAccount:
    config: AccountConfig
    balance: int
    """Money integer scaled by ``config.money_digits``."""
    balance_version: int = 0
    positions: dict[int, SimPosition] = field(default_factory=dict)
    """Open positions only."""
    placeholders: dict[int, SimPosition] = field(default_factory=dict)
    """Empty CREATED positions of pending orders, by position id."""
    orders: dict[int, SimOrder] = field(default_factory=dict)
    """Pending (working) orders only."""
    order_history: list[SimOrder] = field(default_factory=list)
    deals: list[SimDeal] = field(default_factory=list)

    @property
    def account_id(self) -> int:
        return self.config.account_id

    @property
    def netted(self) -> bool:
        return self.config.kind == "netted"

    def netted_position(self, symbol_id: int) -> SimPosition | None:
        for position in self.positions.values():
            if position.symbol_id == symbol_id:
                return position
        return None

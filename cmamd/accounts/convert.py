"""Protobuf messages -> the plain models of ``cmamd.accounts.model``."""

from __future__ import annotations

from google.protobuf.message import Message

from cmamd.accounts.model import (
    AccountKind,
    OrderKind,
    PendingOrder,
    Position,
    Side,
    SymbolSpec,
    TraderInfo,
)
from cmamd.protocol import units
from cmamd.protocol.proto import model_pb2

SIDES = {model_pb2.BUY: Side.BUY, model_pb2.SELL: Side.SELL}
SIDE_TO_PB = {Side.BUY: model_pb2.BUY, Side.SELL: model_pb2.SELL}
ORDER_KINDS = {
    model_pb2.MARKET: OrderKind.MARKET,
    model_pb2.LIMIT: OrderKind.LIMIT,
    model_pb2.STOP: OrderKind.STOP,
    model_pb2.STOP_LIMIT: OrderKind.STOP_LIMIT,
    model_pb2.MARKET_RANGE: OrderKind.MARKET_RANGE,
}
ORDER_KIND_TO_PB = {kind: pb for pb, kind in ORDER_KINDS.items()}
ACCOUNT_KINDS = {
    model_pb2.HEDGED: AccountKind.HEDGED,
    model_pb2.NETTED: AccountKind.NETTED,
    model_pb2.SPREAD_BETTING: AccountKind.SPREAD_BETTING,
}
# Orders that rest on the book and that a copier mirrors as pending orders.
PENDING_KINDS = frozenset({model_pb2.LIMIT, model_pb2.STOP, model_pb2.STOP_LIMIT})


def _opt_float(message: Message, field: str) -> float | None:
    return float(getattr(message, field)) if message.HasField(field) else None


def symbol_spec(symbol: model_pb2.ProtoOASymbol, name: str) -> SymbolSpec:
    step = symbol.stepVolume or 1
    return SymbolSpec(
        symbol_id=symbol.symbolId,
        name=name,
        digits=symbol.digits,
        pip_position=symbol.pipPosition,
        lot_size=symbol.lotSize or 100,
        min_volume=symbol.minVolume or step,
        step_volume=step,
        max_volume=symbol.maxVolume or (1 << 62),
        enabled=symbol.tradingMode != model_pb2.DISABLED_WITHOUT_PENDINGS_EXECUTION
        and symbol.tradingMode != model_pb2.DISABLED_WITH_PENDINGS_EXECUTION,
        close_only=symbol.tradingMode == model_pb2.CLOSE_ONLY_MODE,
        short_selling=symbol.enableShortSelling if symbol.HasField("enableShortSelling") else True,
    )


def trader_info(trader: model_pb2.ProtoOATrader, *, is_live: bool = False) -> TraderInfo:
    digits = trader.moneyDigits if trader.HasField("moneyDigits") else 2
    return TraderInfo(
        account_id=trader.ctidTraderAccountId,
        balance=units.money(trader.balance, digits),
        money_digits=digits,
        kind=ACCOUNT_KINDS.get(trader.accountType, AccountKind.HEDGED),
        leverage_in_cents=trader.leverageInCents,
        trading_allowed=trader.accessRights == model_pb2.FULL_ACCESS,
        broker=trader.brokerName,
        is_live=is_live,
        deposit_asset_id=trader.depositAssetId,
    )


def position(pos: model_pb2.ProtoOAPosition) -> Position:
    trade = pos.tradeData
    return Position(
        position_id=pos.positionId,
        symbol_id=trade.symbolId,
        side=SIDES[trade.tradeSide],
        volume=trade.volume,
        entry_price=pos.price,
        stop_loss=_opt_float(pos, "stopLoss"),
        take_profit=_opt_float(pos, "takeProfit"),
        label=trade.label,
        comment=trade.comment,
        open_ms=trade.openTimestamp,
        updated_ms=pos.utcLastUpdateTimestamp,
        swap=pos.swap,
        commission=pos.commission,
    )


def pending_order(order: model_pb2.ProtoOAOrder) -> PendingOrder:
    trade = order.tradeData
    return PendingOrder(
        order_id=order.orderId,
        symbol_id=trade.symbolId,
        side=SIDES[trade.tradeSide],
        kind=ORDER_KINDS.get(order.orderType, OrderKind.LIMIT),
        volume=trade.volume,
        limit_price=_opt_float(order, "limitPrice"),
        stop_price=_opt_float(order, "stopPrice"),
        stop_loss=_opt_float(order, "stopLoss"),
        take_profit=_opt_float(order, "takeProfit"),
        expiration_ms=order.expirationTimestamp if order.HasField("expirationTimestamp") else None,
        label=trade.label,
        client_order_id=order.clientOrderId,
        position_id=order.positionId if order.HasField("positionId") else None,
        updated_ms=order.utcLastUpdateTimestamp,
    )


def is_resting(order: model_pb2.ProtoOAOrder) -> bool:
    """A pending order still on the book (not a market order, not a closing order)."""
    return (
        order.orderStatus == model_pb2.ORDER_STATUS_ACCEPTED
        and order.orderType in PENDING_KINDS
        and not order.closingOrder
    )

"""Protobuf messages -> the plain models of ``cmamd.accounts.model``."""

from __future__ import annotations

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
    # Once per execution event on the copy path: positional arguments, each field read once.
    trade = pos.tradeData
    has = pos.HasField
    return Position(
        pos.positionId,
        trade.symbolId,
        SIDES[trade.tradeSide],
        trade.volume,
        pos.price,
        pos.stopLoss if has("stopLoss") else None,
        pos.takeProfit if has("takeProfit") else None,
        trade.label,
        trade.comment,
        trade.openTimestamp,
        pos.utcLastUpdateTimestamp,
        pos.swap,
        pos.commission,
    )


def pending_order(order: model_pb2.ProtoOAOrder) -> PendingOrder:
    trade = order.tradeData
    has = order.HasField
    return PendingOrder(
        order.orderId,
        trade.symbolId,
        SIDES[trade.tradeSide],
        ORDER_KINDS.get(order.orderType, OrderKind.LIMIT),
        trade.volume,
        order.limitPrice if has("limitPrice") else None,
        order.stopPrice if has("stopPrice") else None,
        order.stopLoss if has("stopLoss") else None,
        order.takeProfit if has("takeProfit") else None,
        order.expirationTimestamp if has("expirationTimestamp") else None,
        trade.label,
        order.clientOrderId,
        order.positionId if has("positionId") else None,
        order.utcLastUpdateTimestamp,
    )


def is_resting(order: model_pb2.ProtoOAOrder) -> bool:
    """A pending order still on the book (not a market order, not a closing order)."""
    return (
        order.orderStatus == model_pb2.ORDER_STATUS_ACCEPTED
        and order.orderType in PENDING_KINDS
        and not order.closingOrder
    )

"""Protobuf snapshots of engine records, with every proto2 ``required`` field filled."""

from __future__ import annotations

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.protocol.units import price_to_points
from cmamd.sim.config import AccessRights, SymbolConfig, TradingMode
from cmamd.sim.records import SimAccount, SimDeal, SimOrder, SimPosition

TRADING_MODES: dict[TradingMode, model_pb2.ProtoOATradingMode] = {
    "enabled": model_pb2.ENABLED,
    "disabled": model_pb2.DISABLED_WITHOUT_PENDINGS_EXECUTION,
    "disabled_with_pendings": model_pb2.DISABLED_WITH_PENDINGS_EXECUTION,
    "close_only": model_pb2.CLOSE_ONLY_MODE,
}
ACCESS_RIGHTS: dict[AccessRights, model_pb2.ProtoOAAccessRights] = {
    "full": model_pb2.FULL_ACCESS,
    "close_only": model_pb2.CLOSE_ONLY,
    "no_trading": model_pb2.NO_TRADING,
}
WEEK_S = 7 * 24 * 3600


def position_proto(position: SimPosition, money_digits: int) -> model_pb2.ProtoOAPosition:
    trade = model_pb2.ProtoOATradeData(
        symbolId=position.symbol_id,
        volume=position.volume,
        tradeSide=position.side,
        openTimestamp=position.open_ms,
    )
    if position.label:
        trade.label = position.label
    if position.comment:
        trade.comment = position.comment
    if position.close_ms is not None:
        trade.closeTimestamp = position.close_ms
    proto = model_pb2.ProtoOAPosition(
        positionId=position.position_id,
        tradeData=trade,
        positionStatus=position.status,
        swap=0,
        commission=0,
        utcLastUpdateTimestamp=position.updated_ms,
        moneyDigits=money_digits,
    )
    if position.status != model_pb2.POSITION_STATUS_CREATED:
        proto.price = position.price
    if position.stop_loss is not None:
        proto.stopLoss = position.stop_loss
    if position.take_profit is not None:
        proto.takeProfit = position.take_profit
    return proto


def order_proto(order: SimOrder) -> model_pb2.ProtoOAOrder:
    trade = model_pb2.ProtoOATradeData(
        symbolId=order.symbol_id,
        volume=order.volume,
        tradeSide=order.side,
        openTimestamp=order.created_ms,
    )
    if order.label:
        trade.label = order.label
    if order.comment:
        trade.comment = order.comment
    proto = model_pb2.ProtoOAOrder(
        orderId=order.order_id,
        tradeData=trade,
        orderType=order.order_type,
        orderStatus=order.status,
        executedVolume=order.executed_volume,
        utcLastUpdateTimestamp=order.updated_ms,
        closingOrder=order.closing_order,
        timeInForce=order.time_in_force,
    )
    optional: dict[str, float | int | str | None] = {
        "expirationTimestamp": order.expiration_ms,
        "executionPrice": order.execution_price,
        "baseSlippagePrice": order.base_slippage_price,
        "slippageInPoints": order.slippage_in_points,
        "limitPrice": order.limit_price,
        "stopPrice": order.stop_price,
        "stopLoss": order.stop_loss,
        "takeProfit": order.take_profit,
        "clientOrderId": order.client_order_id or None,
        "positionId": order.position_id,
        "relativeStopLoss": order.relative_stop_loss,
        "relativeTakeProfit": order.relative_take_profit,
    }
    for name, value in optional.items():
        if value is not None:
            setattr(proto, name, value)
    return proto


def deal_proto(deal: SimDeal, money_digits: int) -> model_pb2.ProtoOADeal:
    proto = model_pb2.ProtoOADeal(
        dealId=deal.deal_id,
        orderId=deal.order_id,
        positionId=deal.position_id,
        volume=deal.volume,
        filledVolume=deal.filled_volume,
        symbolId=deal.symbol_id,
        createTimestamp=deal.created_ms,
        executionTimestamp=deal.executed_ms,
        utcLastUpdateTimestamp=deal.executed_ms,
        executionPrice=deal.price,
        tradeSide=deal.side,
        dealStatus=model_pb2.FILLED,
        commission=0,
        moneyDigits=money_digits,
    )
    detail = deal.close_detail
    if detail is not None:
        proto.closePositionDetail.CopyFrom(
            model_pb2.ProtoOAClosePositionDetail(
                entryPrice=detail.entry_price,
                grossProfit=detail.gross_profit,
                swap=0,
                commission=0,
                balance=detail.balance,
                balanceVersion=detail.balance_version,
                quoteToDepositConversionRate=detail.quote_to_deposit,
                closedVolume=detail.closed_volume,
                moneyDigits=money_digits,
            )
        )
    return proto


def trader_proto(account: SimAccount, deposit_asset_id: int) -> model_pb2.ProtoOATrader:
    config = account.config
    return model_pb2.ProtoOATrader(
        ctidTraderAccountId=config.account_id,
        balance=account.balance,
        balanceVersion=account.balance_version,
        accessRights=ACCESS_RIGHTS[config.access_rights],
        depositAssetId=deposit_asset_id,
        leverageInCents=config.leverage_in_cents,
        traderLogin=config.trader_login,
        accountType=model_pb2.NETTED if account.netted else model_pb2.HEDGED,
        brokerName=config.broker,
        isLimitedRisk=False,
        moneyDigits=config.money_digits,
    )


def symbol_proto(symbol: SymbolConfig) -> model_pb2.ProtoOASymbol:
    return model_pb2.ProtoOASymbol(
        symbolId=symbol.symbol_id,
        digits=symbol.digits,
        pipPosition=symbol.pip_position,
        enableShortSelling=symbol.short_selling,
        guaranteedStopLoss=False,
        swapLong=0.0,
        swapShort=0.0,
        maxVolume=symbol.max_volume,
        minVolume=symbol.min_volume,
        stepVolume=symbol.step_volume,
        # Trading around the clock: one interval covering the whole week.
        schedule=[model_pb2.ProtoOAInterval(startSecond=0, endSecond=WEEK_S)],
        commission=0,
        scheduleTimeZone="UTC",
        tradingMode=TRADING_MODES[symbol.trading_mode],
        lotSize=symbol.lot_size,
    )


def light_symbol_proto(
    symbol: SymbolConfig, asset_ids: dict[str, int]
) -> model_pb2.ProtoOALightSymbol:
    return model_pb2.ProtoOALightSymbol(
        symbolId=symbol.symbol_id,
        symbolName=symbol.name,
        enabled=True,
        baseAssetId=asset_ids[symbol.base_asset],
        quoteAssetId=asset_ids[symbol.quote_asset],
        symbolCategoryId=symbol.category_id,
        description=symbol.description,
    )


def execution_event(
    account_id: int,
    execution_type: model_pb2.ProtoOAExecutionType,
    *,
    order: SimOrder | None = None,
    position: SimPosition | None = None,
    deal: SimDeal | None = None,
    money_digits: int = 2,
    server_event: bool = False,
) -> messages_pb2.ProtoOAExecutionEvent:
    event = messages_pb2.ProtoOAExecutionEvent(
        ctidTraderAccountId=account_id,
        executionType=execution_type,
    )
    if order is not None:
        event.order.CopyFrom(order_proto(order))
    if position is not None:
        event.position.CopyFrom(position_proto(position, money_digits))
    if deal is not None:
        event.deal.CopyFrom(deal_proto(deal, money_digits))
    if server_event:
        event.isServerEvent = True
    return event


def spot_event(
    account_id: int,
    symbol_id: int,
    bid: float | None,
    ask: float | None,
    timestamp_ms: int | None = None,
) -> messages_pb2.ProtoOASpotEvent:
    """A spot event; a side left None is absent, as when only the other side moved."""
    event = messages_pb2.ProtoOASpotEvent(ctidTraderAccountId=account_id, symbolId=symbol_id)
    if bid is not None:
        event.bid = price_to_points(bid)
    if ask is not None:
        event.ask = price_to_points(ask)
    if timestamp_ms is not None:
        event.timestamp = timestamp_ms
    return event

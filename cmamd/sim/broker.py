"""The trading engine: accounts, orders, positions and deals, with no I/O and no asyncio.

Each trading operation takes the protobuf request a client sends and returns the messages it
produces, in order, each tagged with its account (``AccountEvent``); a refused request raises
``Rejected``. The server sends the first event to the requester with its clientMsgId and
every event to every connection where the account is authorised.

Event sequences (docs/protocol.md §6): a market order gives ORDER_ACCEPTED (executedVolume 0, no
position) then ORDER_FILLED (position snapshot, deal); a pending order gives ORDER_ACCEPTED
with an empty CREATED position, later ORDER_REPLACED / ORDER_CANCELLED / ORDER_EXPIRED or
ORDER_FILLED when the price crosses; a close gives ORDER_ACCEPTED and ORDER_FILLED of a
closing order (deal with closePositionDetail) then TraderUpdatedEvent. Anything the market
or the clock triggers (pending fills, stop loss / take profit, expiry) has isServerEvent.
"""

from __future__ import annotations

from decimal import Decimal

from google.protobuf.message import Message

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.sim.config import SymbolConfig
from cmamd.sim.engine import AccountEvent, EngineBase
from cmamd.sim.records import SimAccount, SimOrder, SimPosition
from cmamd.sim.validation import (
    Rejected,
    check_close_volume,
    check_digits,
    check_entry_side,
    check_expiration,
    check_may_trade,
    check_protection,
    check_relative,
    check_short_selling,
    check_texts,
    check_volume,
)

MARKET_TYPES = (model_pb2.MARKET, model_pb2.MARKET_RANGE)
PENDING_TYPES = (model_pb2.LIMIT, model_pb2.STOP)


def _opt_int(message: Message, field: str) -> int | None:
    value: int | None = getattr(message, field) if message.HasField(field) else None
    return value


def _opt_float(message: Message, field: str) -> float | None:
    value: float | None = getattr(message, field) if message.HasField(field) else None
    return value


class Broker(EngineBase):
    # --- requests ---------------------------------------------------------------------

    def new_order(self, request: messages_pb2.ProtoOANewOrderReq) -> list[AccountEvent]:
        account = self._account(request.ctidTraderAccountId)
        symbol = self._symbol_or_reject(account, request.symbolId)
        check_texts(request.label, request.clientOrderId, request.comment)
        if request.orderType not in MARKET_TYPES + PENDING_TYPES:
            name = model_pb2.ProtoOAOrderType.Name(request.orderType)
            raise Rejected("INVALID_REQUEST", f"{name} orders are not supported")
        target = None
        if request.HasField("positionId"):
            target = self._position_or_reject(account, request.positionId)
            if request.orderType not in MARKET_TYPES or target.symbol_id != symbol.symbol_id:
                raise Rejected("INVALID_REQUEST", "positionId needs a market order on its symbol")
            if target.side != request.tradeSide and request.volume > target.volume:
                raise Rejected("TRADING_BAD_VOLUME", "volume exceeds the position's volume")
        opening = self._opening_volume(account, request, target)
        check_may_trade(symbol, account.config.access_rights, opening > 0)
        check_volume(symbol, request.volume)
        check_short_selling(symbol, request.tradeSide, opening > 0)
        relative_sl = _opt_int(request, "relativeStopLoss")
        relative_tp = _opt_int(request, "relativeTakeProfit")
        check_relative(symbol, relative_sl, relative_tp)
        now = self.now_ms()
        order = SimOrder(
            order_id=next(self._ids.order),
            account_id=account.account_id,
            symbol_id=symbol.symbol_id,
            side=request.tradeSide,
            order_type=request.orderType,
            volume=request.volume,
            time_in_force=model_pb2.IMMEDIATE_OR_CANCEL,
            created_ms=now,
            updated_ms=now,
            relative_stop_loss=relative_sl,
            relative_take_profit=relative_tp,
            label=request.label,
            comment=request.comment,
            client_order_id=request.clientOrderId,
            position_id=target.position_id if target is not None else None,
        )
        if request.orderType in MARKET_TYPES:
            messages = self._market_order(account, symbol, request, order, opening)
        else:
            messages = self._pending_order(account, symbol, request, order, opening)
        return self._tag(account, messages)

    def cancel_order(self, request: messages_pb2.ProtoOACancelOrderReq) -> list[AccountEvent]:
        account = self._account(request.ctidTraderAccountId)
        order = self._order_or_reject(account, request.orderId)
        if account.config.access_rights == "no_trading":
            raise Rejected("TRADING_NOT_ALLOWED", "account access rights are no_trading")
        return self._tag(account, self._end_order(account, order, model_pb2.ORDER_CANCELLED))

    def amend_order(self, request: messages_pb2.ProtoOAAmendOrderReq) -> list[AccountEvent]:
        account = self._account(request.ctidTraderAccountId)
        order = self._order_or_reject(account, request.orderId)
        symbol = self._symbol_or_reject(account, order.symbol_id)
        check_may_trade(symbol, account.config.access_rights, opening=False)
        volume = request.volume if request.HasField("volume") else order.volume
        check_volume(symbol, volume)
        own, other = ("limitPrice", "stopPrice")
        if order.order_type == model_pb2.STOP:
            own, other = other, own
        if request.HasField(other):
            raise Rejected("INVALID_REQUEST", f"{other} does not apply to this order")
        price = getattr(request, own) if request.HasField(own) else order.trigger_price
        if price is None:
            raise Rejected("INVALID_REQUEST", f"{own} missing and the order has none")
        check_digits(symbol, price, "TRADING_BAD_PRICES", own)
        quote = self._market.quote(account.config.broker, symbol.symbol_id)
        check_entry_side(order.order_type, order.side, price, quote)
        stop_loss = request.stopLoss if request.HasField("stopLoss") else order.stop_loss
        take_profit = request.takeProfit if request.HasField("takeProfit") else order.take_profit
        relative_sl = _opt_int(request, "relativeStopLoss")
        relative_tp = _opt_int(request, "relativeTakeProfit")
        check_relative(symbol, relative_sl, relative_tp)
        if relative_sl is not None:
            stop_loss = None
        if relative_tp is not None:
            take_profit = None
        check_protection(symbol, order.side, price, stop_loss, take_profit)
        expiration = _opt_int(request, "expirationTimestamp") or order.expiration_ms
        check_expiration(order.time_in_force, expiration, self.now_ms())
        order.volume = volume
        if order.order_type == model_pb2.LIMIT:
            order.limit_price = price
        else:
            order.stop_price = price
        order.stop_loss, order.take_profit = stop_loss, take_profit
        if request.HasField("stopLoss") or relative_sl is not None:
            order.relative_stop_loss = relative_sl
        if request.HasField("takeProfit") or relative_tp is not None:
            order.relative_take_profit = relative_tp
        if order.time_in_force == model_pb2.GOOD_TILL_DATE:
            order.expiration_ms = expiration
        order.updated_ms = self.now_ms()
        event = self._event(
            account,
            model_pb2.ORDER_REPLACED,
            order=order,
            position=self._order_position(account, order),
        )
        return self._tag(account, [event])

    def amend_position_sltp(
        self, request: messages_pb2.ProtoOAAmendPositionSLTPReq
    ) -> list[AccountEvent]:
        """Replaces both stops: an omitted stopLoss or takeProfit removes it
        (docs/protocol.md §6)."""
        account = self._account(request.ctidTraderAccountId)
        position = self._position_or_reject(account, request.positionId)
        symbol = self._symbol_or_reject(account, position.symbol_id)
        check_may_trade(symbol, account.config.access_rights, opening=False)
        stop_loss = request.stopLoss if request.HasField("stopLoss") else None
        take_profit = request.takeProfit if request.HasField("takeProfit") else None
        reference = self._fills.closing_price(account, position)
        check_protection(symbol, position.side, reference, stop_loss, take_profit)
        position.stop_loss, position.take_profit = stop_loss, take_profit
        position.updated_ms = self.now_ms()
        event = self._event(account, model_pb2.ORDER_REPLACED, position=position)
        return self._tag(account, [event])

    def close_position(self, request: messages_pb2.ProtoOAClosePositionReq) -> list[AccountEvent]:
        account = self._account(request.ctidTraderAccountId)
        position = self._position_or_reject(account, request.positionId)
        symbol = self._symbol_or_reject(account, position.symbol_id)
        check_may_trade(symbol, account.config.access_rights, opening=False)
        check_close_volume(symbol, request.volume, position.volume)
        order = self._closing_order(account, position, request.volume, model_pb2.MARKET)
        price = self._fills.market_price(account, symbol.symbol_id, order.side)
        messages: list[Message] = [
            self._event(account, model_pb2.ORDER_ACCEPTED, order=order, position=position)
        ]
        messages += self._fills.fill(account, symbol, order, price)
        return self._tag(account, messages)

    def deposit(self, account_id: int, amount: Decimal) -> list[AccountEvent]:
        """A deposit (positive) or withdrawal (negative) in deposit currency."""
        account = self._account(account_id)
        delta = int(amount.scaleb(account.config.money_digits).to_integral_value())
        if account.balance + delta < 0:
            raise ValueError("withdrawal exceeds the balance")
        account.balance += delta
        account.balance_version += 1
        event = self._event(account, model_pb2.DEPOSIT_WITHDRAW)
        event.depositWithdraw.CopyFrom(
            model_pb2.ProtoOADepositWithdraw(
                operationType=model_pb2.BALANCE_DEPOSIT
                if delta >= 0
                else model_pb2.BALANCE_WITHDRAW,
                balanceHistoryId=next(self._ids.balance_history),
                balance=account.balance,
                delta=abs(delta),
                changeBalanceTimestamp=self.now_ms(),
                balanceVersion=account.balance_version,
                moneyDigits=account.config.money_digits,
            )
        )
        return self._tag(account, [event, self._fills.trader_updated(account)])

    # --- order placement --------------------------------------------------------------

    def _market_order(
        self,
        account: SimAccount,
        symbol: SymbolConfig,
        request: messages_pb2.ProtoOANewOrderReq,
        order: SimOrder,
        opening: int,
    ) -> list[Message]:
        if request.HasField("stopLoss") or request.HasField("takeProfit"):
            raise Rejected(
                "TRADING_BAD_STOPS",
                "absolute stopLoss/takeProfit are not supported for market orders; "
                "use relativeStopLoss/relativeTakeProfit",
            )
        price = self._fills.market_price(account, symbol.symbol_id, order.side)
        in_range = True
        if request.orderType == model_pb2.MARKET_RANGE:
            if not (request.HasField("baseSlippagePrice") and request.HasField("slippageInPoints")):
                raise Rejected(
                    "INVALID_REQUEST", "MARKET_RANGE needs baseSlippagePrice and slippageInPoints"
                )
            check_digits(
                symbol, request.baseSlippagePrice, "TRADING_BAD_PRICES", "baseSlippagePrice"
            )
            if request.slippageInPoints < 0:
                raise Rejected("INVALID_REQUEST", "slippageInPoints must not be negative")
            order.base_slippage_price = request.baseSlippagePrice
            order.slippage_in_points = request.slippageInPoints
            # A point is the symbol's smallest price step (10^-digits).
            allowed = request.slippageInPoints * 10.0**-symbol.digits
            worse_by = price - request.baseSlippagePrice
            if order.side == model_pb2.SELL:
                worse_by = -worse_by
            in_range = worse_by <= allowed + 1e-12
        self._check_margin(account, symbol, opening, price)
        account.order_history.append(order)
        messages: list[Message] = [self._event(account, model_pb2.ORDER_ACCEPTED, order=order)]
        if not in_range:  # IOC: nothing fills within the range, so the order is cancelled
            order.status = model_pb2.ORDER_STATUS_CANCELLED
            order.updated_ms = self.now_ms()
            messages.append(self._event(account, model_pb2.ORDER_CANCELLED, order=order))
            return messages
        return messages + self._fills.fill(account, symbol, order, price)

    def _pending_order(
        self,
        account: SimAccount,
        symbol: SymbolConfig,
        request: messages_pb2.ProtoOANewOrderReq,
        order: SimOrder,
        opening: int,
    ) -> list[Message]:
        field = "limitPrice" if request.orderType == model_pb2.LIMIT else "stopPrice"
        if not request.HasField(field):
            raise Rejected("TRADING_BAD_PRICES", f"{field} is required for this order type")
        price: float = getattr(request, field)
        check_digits(symbol, price, "TRADING_BAD_PRICES", field)
        quote = self._market.quote(account.config.broker, symbol.symbol_id)
        check_entry_side(request.orderType, request.tradeSide, price, quote)
        stop_loss = _opt_float(request, "stopLoss")
        take_profit = _opt_float(request, "takeProfit")
        if (stop_loss is not None and order.relative_stop_loss is not None) or (
            take_profit is not None and order.relative_take_profit is not None
        ):
            raise Rejected("TRADING_BAD_STOPS", "give a stop either absolute or relative, not both")
        check_protection(symbol, request.tradeSide, price, stop_loss, take_profit)
        if request.timeInForce not in (model_pb2.GOOD_TILL_CANCEL, model_pb2.GOOD_TILL_DATE):
            name = model_pb2.ProtoOATimeInForce.Name(request.timeInForce)
            raise Rejected("INVALID_REQUEST", f"timeInForce {name} is not valid for pending orders")
        expiration = _opt_int(request, "expirationTimestamp")
        check_expiration(request.timeInForce, expiration, self.now_ms())
        self._check_margin(account, symbol, opening, price)
        if request.orderType == model_pb2.LIMIT:
            order.limit_price = price
        else:
            order.stop_price = price
        order.stop_loss, order.take_profit = stop_loss, take_profit
        order.time_in_force = request.timeInForce
        if request.timeInForce == model_pb2.GOOD_TILL_DATE:
            order.expiration_ms = expiration
        position = account.netted_position(symbol.symbol_id) if account.netted else None
        if position is None:
            position = SimPosition(
                position_id=next(self._ids.position),
                account_id=account.account_id,
                symbol_id=symbol.symbol_id,
                side=order.side,
                volume=0,
                status=model_pb2.POSITION_STATUS_CREATED,
                open_ms=order.created_ms,
                updated_ms=order.created_ms,
            )
            account.placeholders[position.position_id] = position
        order.position_id = position.position_id
        account.orders[order.order_id] = order
        account.order_history.append(order)
        return [self._event(account, model_pb2.ORDER_ACCEPTED, order=order, position=position)]


__all__ = ["AccountEvent", "Broker", "Rejected"]

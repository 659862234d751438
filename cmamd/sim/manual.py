"""Trading "from the cTrader app": conveniences for tests and demos.

Each builds the request a client would send and runs it through the same engine, so the
same events reach every connection where the account is authorised. A refusal raises
``OrderError`` with the code the client would have received.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from cmamd.protocol.errors import OrderError
from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.protocol.replies import expect_reply
from cmamd.sim.broker import AccountEvent, Broker
from cmamd.sim.snapshots import OrderKind, Side
from cmamd.sim.validation import Rejected

R = TypeVar("R")

_PENDING = {OrderKind.LIMIT: model_pb2.LIMIT, OrderKind.STOP: model_pb2.STOP}


class ManualTrading:
    broker: Broker

    def broadcast(self, events: list[AccountEvent]) -> None:
        raise NotImplementedError

    def place_market_order(
        self,
        account_id: int,
        symbol: str,
        side: Side | str,
        volume: int,
        *,
        relative_stop_loss: int | None = None,
        relative_take_profit: int | None = None,
        label: str = "",
        comment: str = "",
        position_id: int | None = None,
    ) -> int:
        """Market order by symbol name; returns the id of the position it filled into."""
        request = messages_pb2.ProtoOANewOrderReq(
            ctidTraderAccountId=account_id,
            symbolId=self.broker.symbol_named(account_id, symbol).symbol_id,
            orderType=model_pb2.MARKET,
            tradeSide=Side(side).wire,
            volume=volume,
            label=label,
            comment=comment,
        )
        if relative_stop_loss is not None:
            request.relativeStopLoss = relative_stop_loss
        if relative_take_profit is not None:
            request.relativeTakeProfit = relative_take_profit
        if position_id is not None:
            request.positionId = position_id
        events = self._run(account_id, self.broker.new_order, request)
        filled = [e.message for e in events if _execution_type(e) == model_pb2.ORDER_FILLED]
        fill = expect_reply(filled[0], messages_pb2.ProtoOAExecutionEvent, "a market order")
        return int(fill.position.positionId)

    def place_pending_order(
        self,
        account_id: int,
        symbol: str,
        side: Side | str,
        kind: OrderKind | str,
        volume: int,
        price: float,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        expiration_ms: int | None = None,
        label: str = "",
        comment: str = "",
    ) -> int:
        """LIMIT or STOP order (GTD when ``expiration_ms`` is given); returns its order id."""
        order_type = _PENDING[OrderKind(kind)]
        request = messages_pb2.ProtoOANewOrderReq(
            ctidTraderAccountId=account_id,
            symbolId=self.broker.symbol_named(account_id, symbol).symbol_id,
            orderType=order_type,
            tradeSide=Side(side).wire,
            volume=volume,
            label=label,
            comment=comment,
        )
        if order_type == model_pb2.LIMIT:
            request.limitPrice = price
        else:
            request.stopPrice = price
        if stop_loss is not None:
            request.stopLoss = stop_loss
        if take_profit is not None:
            request.takeProfit = take_profit
        if expiration_ms is not None:
            request.timeInForce = model_pb2.GOOD_TILL_DATE
            request.expirationTimestamp = expiration_ms
        events = self._run(account_id, self.broker.new_order, request)
        accepted = expect_reply(events[0].message, messages_pb2.ProtoOAExecutionEvent, "an order")
        return int(accepted.order.orderId)

    def amend_pending_order(
        self,
        account_id: int,
        order_id: int,
        *,
        volume: int | None = None,
        price: float | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
    ) -> None:
        """Change what is given; the rest of the order stays as it is."""
        request = messages_pb2.ProtoOAAmendOrderReq(
            ctidTraderAccountId=account_id, orderId=order_id
        )
        if volume is not None:
            request.volume = volume
        if price is not None:
            order = next(o for o in self.broker.orders(account_id) if o.order_id == order_id)
            if order.kind is OrderKind.LIMIT:
                request.limitPrice = price
            else:
                request.stopPrice = price
        if stop_loss is not None:
            request.stopLoss = stop_loss
        if take_profit is not None:
            request.takeProfit = take_profit
        self._run(account_id, self.broker.amend_order, request)

    def cancel_pending_order(self, account_id: int, order_id: int) -> None:
        request = messages_pb2.ProtoOACancelOrderReq(
            ctidTraderAccountId=account_id, orderId=order_id
        )
        self._run(account_id, self.broker.cancel_order, request)

    def close_position(self, account_id: int, position_id: int, volume: int | None = None) -> None:
        """Close ``volume`` of the position (all of it when None)."""
        if volume is None:
            open_positions = {p.position_id: p for p in self.broker.positions(account_id)}
            if position_id not in open_positions:
                raise OrderError("POSITION_NOT_FOUND", "", account_id=account_id)
            volume = open_positions[position_id].volume
        request = messages_pb2.ProtoOAClosePositionReq(
            ctidTraderAccountId=account_id, positionId=position_id, volume=volume
        )
        self._run(account_id, self.broker.close_position, request)

    def amend_position_sltp(
        self,
        account_id: int,
        position_id: int,
        stop_loss: float | None = None,
        take_profit: float | None = None,
    ) -> None:
        """Set both stops; None removes one."""
        request = messages_pb2.ProtoOAAmendPositionSLTPReq(
            ctidTraderAccountId=account_id, positionId=position_id
        )
        if stop_loss is not None:
            request.stopLoss = stop_loss
        if take_profit is not None:
            request.takeProfit = take_profit
        self._run(account_id, self.broker.amend_position_sltp, request)

    def deposit(self, account_id: int, amount: Decimal | int | str) -> None:
        """Deposit (or, negative, withdraw) ``amount`` of the deposit currency."""
        self.broadcast(self.broker.deposit(account_id, Decimal(amount)))

    def _run(
        self, account_id: int, operation: Callable[[R], list[AccountEvent]], request: R
    ) -> list[AccountEvent]:
        try:
            events = operation(request)
        except Rejected as rejection:
            raise OrderError(
                rejection.code,
                rejection.description,
                account_id=account_id,
                order_id=rejection.order_id,
                position_id=rejection.position_id,
            ) from None
        self.broadcast(events)
        return events


def _execution_type(event: AccountEvent) -> int | None:
    message = event.message
    if isinstance(message, messages_pb2.ProtoOAExecutionEvent):
        return message.executionType
    return None

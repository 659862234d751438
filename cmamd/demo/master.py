"""A master account trading through its own Open API client, as cTrader would.

The daemon never sees these requests: it learns of the trades only from the execution
events the server pushes to its own connection, exactly as in production.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from google.protobuf.message import Message

from cmamd.accounts import convert
from cmamd.accounts.model import OrderKind, Side, SymbolSpec
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.ratelimit import Priority
from cmamd.protocol import units
from cmamd.protocol.codec import Envelope
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.protocol.replies import expect_reply


class MasterTrader:
    def __init__(self, connection: OpenApiConnection, account_id: int) -> None:
        self.connection = connection
        self.account_id = account_id
        self.symbols: dict[str, SymbolSpec] = {}
        self._fills: dict[int, asyncio.Future[int]] = {}
        connection.add_listener(self._on_envelope)

    @classmethod
    async def connect(
        cls, url: str, client_id: str, client_secret: str, account_id: int, access_token: str
    ) -> MasterTrader:
        connection = OpenApiConnection(url, client_id, client_secret, name="master-client")
        await connection.start(connect_attempts=3)
        trader = cls(connection, account_id)
        await trader._request(
            pb.ProtoOAAccountAuthReq(ctidTraderAccountId=account_id, accessToken=access_token)
        )
        light = expect_reply(
            await trader._request(pb.ProtoOASymbolsListReq(ctidTraderAccountId=account_id)),
            pb.ProtoOASymbolsListRes,
            "the symbol list",
        )
        names = {s.symbolId: s.symbolName for s in light.symbol}
        details = expect_reply(
            await trader._request(
                pb.ProtoOASymbolByIdReq(ctidTraderAccountId=account_id, symbolId=sorted(names))
            ),
            pb.ProtoOASymbolByIdRes,
            "the symbol details",
        )
        trader.symbols = {
            names[s.symbolId]: convert.symbol_spec(s, names[s.symbolId]) for s in details.symbol
        }
        return trader

    async def close_connection(self) -> None:
        await self.connection.close()

    def volume(self, symbol: str, lots: Decimal | str | float) -> int:
        return int(units.lots_to_volume(Decimal(str(lots)), self.symbols[symbol].lot_size))

    async def market(
        self,
        symbol: str,
        side: Side,
        lots: Decimal | str | float,
        *,
        sl_distance: float | None = None,
        tp_distance: float | None = None,
    ) -> int:
        """Open at market; SL/TP as price distances from the entry. Returns the position id."""
        request = pb.ProtoOANewOrderReq(
            ctidTraderAccountId=self.account_id,
            symbolId=self.symbols[symbol].symbol_id,
            orderType=model_pb2.MARKET,
            tradeSide=convert.SIDE_TO_PB[side],
            volume=self.volume(symbol, lots),
        )
        step = 10 ** (5 - self.symbols[symbol].digits)  # relative levels sit on the price grid
        if sl_distance is not None:
            request.relativeStopLoss = round(units.price_to_points(sl_distance) / step) * step
        if tp_distance is not None:
            request.relativeTakeProfit = round(units.price_to_points(tp_distance) / step) * step
        return await self._until_filled(request)

    async def close(self, position_id: int, volume: int) -> None:
        await self._until_filled(
            pb.ProtoOAClosePositionReq(
                ctidTraderAccountId=self.account_id, positionId=position_id, volume=volume
            )
        )

    async def amend_sl_tp(self, position_id: int, stop_loss: float, take_profit: float) -> None:
        await self._request(
            pb.ProtoOAAmendPositionSLTPReq(
                ctidTraderAccountId=self.account_id,
                positionId=position_id,
                stopLoss=stop_loss,
                takeProfit=take_profit,
            )
        )

    async def pending(
        self,
        symbol: str,
        side: Side,
        kind: OrderKind,
        lots: Decimal | str | float,
        price: float,
        *,
        expiration_ms: int | None = None,
    ) -> int:
        request = pb.ProtoOANewOrderReq(
            ctidTraderAccountId=self.account_id,
            symbolId=self.symbols[symbol].symbol_id,
            orderType=convert.ORDER_KIND_TO_PB[kind],
            tradeSide=convert.SIDE_TO_PB[side],
            volume=self.volume(symbol, lots),
        )
        if kind is OrderKind.LIMIT:
            request.limitPrice = price
        else:
            request.stopPrice = price
        if expiration_ms is not None:
            request.timeInForce = model_pb2.GOOD_TILL_DATE
            request.expirationTimestamp = expiration_ms
        reply = expect_reply(
            await self._request(request), pb.ProtoOAExecutionEvent, "a pending order"
        )
        return int(reply.order.orderId)

    async def amend_pending(
        self, order_id: int, kind: OrderKind, volume: int, price: float
    ) -> None:
        request = pb.ProtoOAAmendOrderReq(
            ctidTraderAccountId=self.account_id, orderId=order_id, volume=volume
        )
        if kind is OrderKind.LIMIT:
            request.limitPrice = price
        else:
            request.stopPrice = price
        await self._request(request)

    async def cancel(self, order_id: int) -> None:
        await self._request(
            pb.ProtoOACancelOrderReq(ctidTraderAccountId=self.account_id, orderId=order_id)
        )

    def expect_fill(self, order_id: int) -> asyncio.Future[int]:
        """A future resolved with the position id when ``order_id`` fills."""
        return self._fills.setdefault(order_id, asyncio.get_running_loop().create_future())

    async def _until_filled(
        self, request: pb.ProtoOANewOrderReq | pb.ProtoOAClosePositionReq
    ) -> int:
        reply = expect_reply(await self._request(request), pb.ProtoOAExecutionEvent, "an order")
        if reply.executionType == model_pb2.ORDER_FILLED:
            return int(reply.position.positionId)
        return await asyncio.wait_for(self.expect_fill(reply.order.orderId), 10)

    async def _request(self, message: Message) -> Message:
        return await self.connection.request(message, priority=Priority.QUERY)

    def _on_envelope(self, envelope: Envelope) -> None:
        event = envelope.message
        if (
            isinstance(event, pb.ProtoOAExecutionEvent)
            and event.ctidTraderAccountId == self.account_id
            and event.executionType == model_pb2.ORDER_FILLED
        ):
            future = self.expect_fill(event.order.orderId)
            if not future.done():
                future.set_result(event.position.positionId)

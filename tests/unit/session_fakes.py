"""A scriptable stand-in for OpenApiConnection, enough for one AccountSession.

It answers the start-up requests from a tiny in-memory account, can fail or hold any
request type, and pushes events to the listeners as real, encoded-then-decoded envelopes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from cmamd.protocol.codec import Envelope, decode, encode
from cmamd.protocol.errors import OpenApiError
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

ACCOUNT = 5001
OTHER_ACCOUNT = 5002

# asset id -> name; the account's deposit currency is USD
ASSETS = {1: "USD", 2: "EUR", 3: "JPY", 4: "GBP", 5: "CHF"}
# symbol id -> (name, base asset, quote asset, digits, lot size)
SYMBOLS = {
    1: ("EURUSD", 2, 1, 5, 10_000_000),
    2: ("USDJPY", 1, 3, 3, 10_000_000),
    3: ("GBPJPY", 4, 3, 3, 10_000_000),
    4: ("EURGBP", 2, 4, 5, 10_000_000),
    5: ("GBPUSD", 4, 1, 5, 10_000_000),
    6: ("EURCHF", 2, 5, 5, 10_000_000),
}


def envelope(message: Message) -> Envelope:
    """As a listener receives it: through the wire codec (required fields are checked)."""
    return decode(encode(message))


def trade_data(
    symbol_id: int, volume: int, side: model_pb2.ProtoOATradeSide = model_pb2.BUY, **kw: Any
) -> model_pb2.ProtoOATradeData:
    return model_pb2.ProtoOATradeData(symbolId=symbol_id, volume=volume, tradeSide=side, **kw)


def position(
    position_id: int,
    volume: int = 1_000_000,
    status: model_pb2.ProtoOAPositionStatus = model_pb2.POSITION_STATUS_OPEN,
    symbol_id: int = 1,
    **kw: Any,
) -> model_pb2.ProtoOAPosition:
    return model_pb2.ProtoOAPosition(
        positionId=position_id,
        tradeData=trade_data(symbol_id, volume, label="copy"),
        positionStatus=status,
        swap=0,
        price=1.085,
        **kw,
    )


def order(
    order_id: int,
    kind: model_pb2.ProtoOAOrderType = model_pb2.LIMIT,
    status: model_pb2.ProtoOAOrderStatus = model_pb2.ORDER_STATUS_ACCEPTED,
    volume: int = 1_000_000,
    **kw: Any,
) -> model_pb2.ProtoOAOrder:
    if kind == model_pb2.LIMIT and "limitPrice" not in kw:
        kw["limitPrice"] = 1.07
    return model_pb2.ProtoOAOrder(
        orderId=order_id, tradeData=trade_data(1, volume), orderType=kind, orderStatus=status, **kw
    )


def execution(
    execution_type: model_pb2.ProtoOAExecutionType, account: int = ACCOUNT, **kw: Any
) -> pb.ProtoOAExecutionEvent:
    return pb.ProtoOAExecutionEvent(ctidTraderAccountId=account, executionType=execution_type, **kw)


def closing_deal(
    position_id: int, balance: int, money_digits: int | None = None
) -> model_pb2.ProtoOADeal:
    detail = model_pb2.ProtoOAClosePositionDetail(
        entryPrice=1.08, grossProfit=1234, swap=0, commission=0, balance=balance
    )
    if money_digits is not None:
        detail.moneyDigits = money_digits
    return model_pb2.ProtoOADeal(
        dealId=9,
        orderId=8,
        positionId=position_id,
        volume=1,
        filledVolume=1,
        symbolId=1,
        createTimestamp=1,
        executionTimestamp=1,
        tradeSide=model_pb2.SELL,
        dealStatus=model_pb2.FILLED,
        closePositionDetail=detail,
    )


def trader(balance: int = 1_000_000, money_digits: int = 2) -> model_pb2.ProtoOATrader:
    return model_pb2.ProtoOATrader(
        ctidTraderAccountId=ACCOUNT,
        balance=balance,
        depositAssetId=1,
        moneyDigits=money_digits,
        accountType=model_pb2.HEDGED,
        brokerName="Fake Broker",
        leverageInCents=10_000,
    )


class FakeConnection:
    """The connection as an AccountSession uses it."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[Envelope], None]] = []
        self.hooks: list[Callable[[Any], Any]] = []
        self.is_ready = True
        self.sent: list[Message] = []
        # what the fake broker holds
        self.valid_access = "access-0"
        self.valid_refresh = "refresh-0"
        self.rotations = 0
        self.trader = trader()
        self.positions: list[model_pb2.ProtoOAPosition] = []
        self.orders: list[model_pb2.ProtoOAOrder] = []
        self.unrealized: list[int] = []
        # scripting: errors to raise (in turn) and gates to hold, per request type name
        self.errors: dict[str, list[BaseException]] = {}
        self.gates: dict[str, asyncio.Event] = {}

    # the surface AccountSession uses -----------------------------------------------------
    def add_listener(self, callback: Callable[[Envelope], None]) -> None:
        self.listeners.append(callback)

    def remove_listener(self, callback: Callable[[Envelope], None]) -> None:
        if callback in self.listeners:
            self.listeners.remove(callback)

    def add_account_listener(self, account_id: int, callback: Callable[[Envelope], None]) -> None:
        self.listeners.append(callback)  # the fake offers every message to every listener

    def remove_account_listener(
        self, account_id: int, callback: Callable[[Envelope], None]
    ) -> None:
        self.remove_listener(callback)

    def add_session_hook(self, hook: Callable[[Any], Any]) -> None:
        self.hooks.append(hook)

    def remove_session_hook(self, hook: Callable[[Any], Any]) -> None:
        if hook in self.hooks:
            self.hooks.remove(hook)

    async def request(
        self,
        message: Message,
        *,
        priority: Any = None,
        timeout: float | None = None,
        account_id: int | None = None,
    ) -> Message:
        name = type(message).__name__
        self.sent.append(message)
        gate = self.gates.get(name)
        if gate is not None:
            await gate.wait()
        queued = self.errors.get(name)
        if queued:
            raise queued.pop(0)
        reply = getattr(self, "_" + name)(message)
        return decode(encode(reply)).message  # as the wire would deliver it

    async def wait_ready(self, timeout: float | None = None) -> None:
        return None

    # helpers for tests -------------------------------------------------------------------
    def count(self, name: str) -> int:
        return Counter(type(m).__name__ for m in self.sent)[name]

    def feed(self, message: Message) -> None:
        for listener in list(self.listeners):
            listener(envelope(message))

    def fail(self, name: str, *errors: BaseException) -> None:
        self.errors.setdefault(name, []).extend(errors)

    def hold(self, name: str) -> asyncio.Event:
        gate = self.gates[name] = asyncio.Event()
        return gate

    # replies -----------------------------------------------------------------------------
    def _ProtoOAAccountAuthReq(self, req: pb.ProtoOAAccountAuthReq) -> Message:
        if req.accessToken != self.valid_access:
            raise OpenApiError(
                "CH_ACCESS_TOKEN_INVALID",
                "access token is invalid",
                account_id=req.ctidTraderAccountId,
            )
        return pb.ProtoOAAccountAuthRes(ctidTraderAccountId=req.ctidTraderAccountId)

    def _ProtoOARefreshTokenReq(self, req: pb.ProtoOARefreshTokenReq) -> Message:
        if req.refreshToken != self.valid_refresh:
            raise OpenApiError("CH_ACCESS_TOKEN_INVALID", "refresh token is invalid")
        self.rotations += 1
        self.valid_access = f"access-{self.rotations}"
        self.valid_refresh = f"refresh-{self.rotations}"
        return pb.ProtoOARefreshTokenRes(
            accessToken=self.valid_access,
            refreshToken=self.valid_refresh,
            tokenType="bearer",
            expiresIn=2_628_000,
        )

    def _ProtoOATraderReq(self, req: pb.ProtoOATraderReq) -> Message:
        return pb.ProtoOATraderRes(ctidTraderAccountId=req.ctidTraderAccountId, trader=self.trader)

    def _ProtoOAAssetListReq(self, req: pb.ProtoOAAssetListReq) -> Message:
        return pb.ProtoOAAssetListRes(
            ctidTraderAccountId=req.ctidTraderAccountId,
            asset=[model_pb2.ProtoOAAsset(assetId=i, name=n) for i, n in ASSETS.items()],
        )

    def _ProtoOASymbolsListReq(self, req: pb.ProtoOASymbolsListReq) -> Message:
        return pb.ProtoOASymbolsListRes(
            ctidTraderAccountId=req.ctidTraderAccountId,
            symbol=[
                model_pb2.ProtoOALightSymbol(
                    symbolId=i, symbolName=n, baseAssetId=b, quoteAssetId=q
                )
                for i, (n, b, q, _, _) in SYMBOLS.items()
            ],
        )

    def _ProtoOASymbolByIdReq(self, req: pb.ProtoOASymbolByIdReq) -> Message:
        return pb.ProtoOASymbolByIdRes(
            ctidTraderAccountId=req.ctidTraderAccountId,
            symbol=[
                model_pb2.ProtoOASymbol(
                    symbolId=i,
                    digits=SYMBOLS[i][3],
                    pipPosition=SYMBOLS[i][3] - 1,
                    lotSize=SYMBOLS[i][4],
                    minVolume=100_000,
                    stepVolume=100_000,
                    maxVolume=1_000_000_000,
                )
                for i in req.symbolId
            ],
        )

    def _ProtoOAReconcileReq(self, req: pb.ProtoOAReconcileReq) -> Message:
        return pb.ProtoOAReconcileRes(
            ctidTraderAccountId=req.ctidTraderAccountId, position=self.positions, order=self.orders
        )

    def _ProtoOAGetPositionUnrealizedPnLReq(
        self, req: pb.ProtoOAGetPositionUnrealizedPnLReq
    ) -> Message:
        return pb.ProtoOAGetPositionUnrealizedPnLRes(
            ctidTraderAccountId=req.ctidTraderAccountId,
            moneyDigits=2,
            positionUnrealizedPnL=[
                model_pb2.ProtoOAPositionUnrealizedPnL(
                    positionId=i + 1, grossUnrealizedPnL=v, netUnrealizedPnL=v
                )
                for i, v in enumerate(self.unrealized)
            ],
        )

    def _ProtoOAAccountLogoutReq(self, req: pb.ProtoOAAccountLogoutReq) -> Message:
        return pb.ProtoOAAccountLogoutRes(ctidTraderAccountId=req.ctidTraderAccountId)

"""Trade requests as a client sends them, for tests that drive a server directly."""

from __future__ import annotations

from cmamd.protocol.proto import messages_pb2, model_pb2


def market_order(
    account_id: int,
    volume: int = 100_000,
    side: model_pb2.ProtoOATradeSide = model_pb2.BUY,
    symbol_id: int = 1,  # EURUSD on the simulator's Demo Markets
) -> messages_pb2.ProtoOANewOrderReq:
    return messages_pb2.ProtoOANewOrderReq(
        ctidTraderAccountId=account_id,
        symbolId=symbol_id,
        orderType=model_pb2.MARKET,
        tradeSide=side,
        volume=volume,
    )

"""An order the broker accepts and then rejects (a fault mode of the simulator).

Real servers do this, e.g. when the liquidity provider refuses a market order after the
server accepted it: ORDER_ACCEPTED, then ORDER_REJECTED with the reason in ``errorCode``.
The client must keep that code; nothing is filled.
"""

from __future__ import annotations

import itertools

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.sim.broker import AccountEvent

_ORDER_IDS = itertools.count(90_000_001)  # apart from the broker's own ids


def accepted_then_rejected(
    request: messages_pb2.ProtoOANewOrderReq, code: str
) -> list[AccountEvent]:
    account_id = request.ctidTraderAccountId
    order = model_pb2.ProtoOAOrder(
        orderId=next(_ORDER_IDS),
        tradeData=model_pb2.ProtoOATradeData(
            symbolId=request.symbolId,
            volume=request.volume,
            tradeSide=request.tradeSide,
            label=request.label,
        ),
        orderType=request.orderType,
        orderStatus=model_pb2.ORDER_STATUS_ACCEPTED,
        clientOrderId=request.clientOrderId,
    )
    accepted = messages_pb2.ProtoOAExecutionEvent(
        ctidTraderAccountId=account_id, executionType=model_pb2.ORDER_ACCEPTED, order=order
    )
    rejected_order = model_pb2.ProtoOAOrder()
    rejected_order.CopyFrom(order)
    rejected_order.orderStatus = model_pb2.ORDER_STATUS_REJECTED
    rejected = messages_pb2.ProtoOAExecutionEvent(
        ctidTraderAccountId=account_id,
        executionType=model_pb2.ORDER_REJECTED,
        order=rejected_order,
        errorCode=code,
    )
    return [AccountEvent(account_id, accepted), AccountEvent(account_id, rejected)]

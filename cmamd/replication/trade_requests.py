"""Order intents -> Open API trade requests, and what answer completes each of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from google.protobuf.message import Message

from cmamd.accounts.convert import ORDER_KIND_TO_PB, SIDE_TO_PB
from cmamd.accounts.model import OrderKind, Position, SymbolSpec
from cmamd.connection.ratelimit import Priority
from cmamd.protocol import units
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.replication.intents import (
    AmendPendingOrder,
    AmendPositionProtection,
    CancelPendingOrder,
    ClosePosition,
    Intent,
    OpenPosition,
    PlacePendingOrder,
    reduces_risk,
)

FILLED = frozenset({model_pb2.ORDER_FILLED})
REJECTED = frozenset({model_pb2.ORDER_REJECTED, model_pb2.ORDER_CANCEL_REJECTED})
_OPENED = FILLED | {model_pb2.ORDER_CANCELLED, model_pb2.ORDER_EXPIRED}
_CLOSED = FILLED | {model_pb2.ORDER_CANCELLED}
_REPLACED = frozenset({model_pb2.ORDER_REPLACED})
_ACCEPTED = frozenset({model_pb2.ORDER_ACCEPTED})
_CANCELLED = frozenset({model_pb2.ORDER_CANCELLED})


def completion_types(intent: Intent) -> frozenset[int]:
    """Execution types that end ``intent`` (besides the rejections in ``REJECTED``)."""
    # A market order ends filled, or cancelled after a partial fill; a resting order is done
    # once accepted; amendments answer ORDER_REPLACED; cancels ORDER_CANCELLED.
    match intent:
        case OpenPosition():
            return _OPENED | REJECTED
        case ClosePosition():
            return _CLOSED | REJECTED
        case AmendPositionProtection() | AmendPendingOrder():
            return _REPLACED | REJECTED
        case PlacePendingOrder():
            return _ACCEPTED | REJECTED
        case CancelPendingOrder():
            return _CANCELLED | REJECTED
        case _:
            assert_never(intent)


def priority_of(intent: Intent) -> Priority:
    return Priority.REDUCE if reduces_risk(intent) else Priority.INCREASE


def build_request(intent: Intent) -> Message:
    account = intent.follower_account_id
    match intent:
        case OpenPosition():
            req = pb.ProtoOANewOrderReq(
                ctidTraderAccountId=account,
                symbolId=intent.symbol_id,
                orderType=model_pb2.MARKET,
                tradeSide=SIDE_TO_PB[intent.side],
                volume=intent.volume,
                label=intent.label,
                clientOrderId=intent.client_order_id,
            )
            if intent.slippage_points is not None and intent.base_price is not None:
                req.orderType = model_pb2.MARKET_RANGE
                req.baseSlippagePrice = intent.base_price
                req.slippageInPoints = intent.slippage_points
            if intent.relative_stop_loss:
                req.relativeStopLoss = intent.relative_stop_loss
            if intent.relative_take_profit:
                req.relativeTakeProfit = intent.relative_take_profit
            return req
        case ClosePosition():
            return pb.ProtoOAClosePositionReq(
                ctidTraderAccountId=account, positionId=intent.position_id, volume=intent.volume
            )
        case AmendPositionProtection():
            sltp = pb.ProtoOAAmendPositionSLTPReq(
                ctidTraderAccountId=account, positionId=intent.position_id
            )
            if intent.stop_loss is not None:
                sltp.stopLoss = intent.stop_loss
            if intent.take_profit is not None:
                sltp.takeProfit = intent.take_profit
            return sltp
        case PlacePendingOrder():
            pending = pb.ProtoOANewOrderReq(
                ctidTraderAccountId=account,
                symbolId=intent.symbol_id,
                orderType=ORDER_KIND_TO_PB[intent.kind],
                tradeSide=SIDE_TO_PB[intent.side],
                volume=intent.volume,
                label=intent.label,
                clientOrderId=intent.client_order_id,
            )
            _set_price(pending, intent.kind, intent.price)
            _set_protection(pending, intent.stop_loss, intent.take_profit)
            if intent.expiration_ms is not None:
                pending.timeInForce = model_pb2.GOOD_TILL_DATE
                pending.expirationTimestamp = intent.expiration_ms
            return pending
        case AmendPendingOrder():
            amend = pb.ProtoOAAmendOrderReq(
                ctidTraderAccountId=account, orderId=intent.order_id, volume=intent.volume
            )
            _set_price(amend, intent.kind, intent.price)
            _set_protection(amend, intent.stop_loss, intent.take_profit)
            if intent.expiration_ms is not None:
                amend.expirationTimestamp = intent.expiration_ms
            return amend
        case CancelPendingOrder():
            return pb.ProtoOACancelOrderReq(ctidTraderAccountId=account, orderId=intent.order_id)
        case _:
            assert_never(intent)


_PendingOrderReq = pb.ProtoOANewOrderReq | pb.ProtoOAAmendOrderReq
"""The requests that carry a pending order's price and protection."""


def _set_price(req: _PendingOrderReq, kind: OrderKind, price: float) -> None:
    if kind is OrderKind.LIMIT:
        req.limitPrice = price
    else:
        req.stopPrice = price


def _set_protection(
    req: _PendingOrderReq, stop_loss: float | None, take_profit: float | None
) -> None:
    if stop_loss is not None:
        req.stopLoss = stop_loss
    if take_profit is not None:
        req.takeProfit = take_profit


def summarize(
    intent: Intent, symbols: Mapping[int, SymbolSpec], positions: Mapping[int, Position]
) -> str:
    """A short human description for logs and the demo, e.g. ``open buy 1.2 lots EURUSD``."""

    def lots(symbol_id: int, volume: int) -> str:
        spec = symbols.get(symbol_id)
        if spec is None:
            return f"{volume} cents"
        text = units.format_lots(volume, spec.lot_size)
        return f"{text} lot" if text == "1.00" else f"{text} lots"

    def name(symbol_id: int) -> str:
        spec = symbols.get(symbol_id)
        return spec.name if spec else f"symbol {symbol_id}"

    match intent:
        case OpenPosition():
            amount = lots(intent.symbol_id, intent.volume)
            return f"open {intent.side.value} {amount} {name(intent.symbol_id)}"
        case ClosePosition():
            position = positions.get(intent.position_id)
            if position is None:
                return f"close position {intent.position_id}"
            whole = "close" if intent.volume >= position.volume else "partial close"
            amount = lots(position.symbol_id, intent.volume)
            return f"{whole} {amount} {name(position.symbol_id)}"
        case AmendPositionProtection():
            return f"set SL {intent.stop_loss} TP {intent.take_profit} on #{intent.position_id}"
        case PlacePendingOrder():
            amount = lots(intent.symbol_id, intent.volume)
            return (
                f"place {intent.side.value} {intent.kind.value} {amount}"
                f" {name(intent.symbol_id)} @ {intent.price}"
            )
        case AmendPendingOrder():
            return f"amend order #{intent.order_id} @ {intent.price}"
        case CancelPendingOrder():
            return f"cancel order #{intent.order_id}"
        case _:
            assert_never(intent)

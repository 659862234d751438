"""Intents -> Open API requests: every field of every request, outcomes, priority, text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import Message

from cmamd.accounts.model import OrderKind, Position, Side, SymbolSpec
from cmamd.connection.ratelimit import Priority
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
from cmamd.replication.trade_requests import (
    REJECTED,
    build_request,
    completion_types,
    priority_of,
    summarize,
)

ACC = 2002
EURUSD = SymbolSpec(11, "EURUSD", 5, 4, 10_000_000, 100_000, 100_000, 1_000_000_000)
XAUUSD = SymbolSpec(12, "XAUUSD", 2, 1, 10_000, 100, 100, 10_000_000)
SYMBOLS = {s.symbol_id: s for s in (EURUSD, XAUUSD)}


def fields(message: Message) -> dict[str, Any]:
    """Exactly the fields that are set (proto2: presence is tracked)."""
    return {descriptor.name: value for descriptor, value in message.ListFields()}


def open_position(**kw: Any) -> OpenPosition:
    values: dict[str, Any] = dict(
        follower_account_id=ACC,
        key="p1",
        symbol_id=11,
        side=Side.SELL,
        volume=2_500_000,
        relative_stop_loss=None,
        relative_take_profit=None,
        label="cm1:abc",
        client_order_id="cid-1",
    )
    values.update(kw)
    return OpenPosition(**values)


def place(**kw: Any) -> PlacePendingOrder:
    values: dict[str, Any] = dict(
        follower_account_id=ACC,
        key="o7",
        symbol_id=12,
        side=Side.BUY,
        kind=OrderKind.LIMIT,
        volume=500,
        price=2340.5,
        stop_loss=None,
        take_profit=None,
        expiration_ms=None,
        label="cm1:o7",
        client_order_id="cid-7",
    )
    values.update(kw)
    return PlacePendingOrder(**values)


def amend(**kw: Any) -> AmendPendingOrder:
    values: dict[str, Any] = dict(
        follower_account_id=ACC,
        key="o7",
        order_id=99,
        kind=OrderKind.LIMIT,
        volume=700,
        price=2338.0,
        stop_loss=None,
        take_profit=None,
        expiration_ms=None,
    )
    values.update(kw)
    return AmendPendingOrder(**values)


# build_request -------------------------------------------------------------------------
def test_open_position_is_a_plain_market_order() -> None:
    req = build_request(open_position())
    assert isinstance(req, pb.ProtoOANewOrderReq)
    assert fields(req) == {
        "ctidTraderAccountId": ACC,
        "symbolId": 11,
        "orderType": model_pb2.MARKET,
        "tradeSide": model_pb2.SELL,
        "volume": 2_500_000,
        "label": "cm1:abc",
        "clientOrderId": "cid-1",
    }


def test_open_position_with_relative_protection() -> None:
    req = build_request(
        open_position(side=Side.BUY, relative_stop_loss=50_000, relative_take_profit=120_000)
    )
    got = fields(req)
    assert got["tradeSide"] == model_pb2.BUY
    assert (got["relativeStopLoss"], got["relativeTakeProfit"]) == (50_000, 120_000)
    assert "stopLoss" not in got and "takeProfit" not in got


def test_open_position_with_slippage_is_market_range_around_the_base_price() -> None:
    req = build_request(open_position(slippage_points=30, base_price=1.08512))
    got = fields(req)
    assert got["orderType"] == model_pb2.MARKET_RANGE
    assert got["baseSlippagePrice"] == 1.08512
    assert got["slippageInPoints"] == 30


def test_open_position_with_zero_slippage_is_still_market_range() -> None:
    got = fields(build_request(open_position(slippage_points=0, base_price=1.1)))
    assert got["orderType"] == model_pb2.MARKET_RANGE
    assert got["slippageInPoints"] == 0


def test_open_position_slippage_without_base_price_stays_market() -> None:
    got = fields(build_request(open_position(slippage_points=30, base_price=None)))
    assert got["orderType"] == model_pb2.MARKET
    assert "slippageInPoints" not in got and "baseSlippagePrice" not in got


def test_close_position() -> None:
    req = build_request(ClosePosition(ACC, "p1", position_id=555, volume=1_000_000))
    assert isinstance(req, pb.ProtoOAClosePositionReq)
    assert fields(req) == {"ctidTraderAccountId": ACC, "positionId": 555, "volume": 1_000_000}


def test_amend_position_protection_sets_both_levels() -> None:
    req = build_request(AmendPositionProtection(ACC, "p1", 555, 1.08, 1.1))
    assert isinstance(req, pb.ProtoOAAmendPositionSLTPReq)
    assert fields(req) == {
        "ctidTraderAccountId": ACC,
        "positionId": 555,
        "stopLoss": 1.08,
        "takeProfit": 1.1,
    }


def test_amend_position_protection_leaves_absent_levels_out() -> None:
    req = build_request(AmendPositionProtection(ACC, "p1", 555, None, 1.1))
    assert fields(req) == {"ctidTraderAccountId": ACC, "positionId": 555, "takeProfit": 1.1}
    req = build_request(AmendPositionProtection(ACC, "p1", 555, None, None))
    assert fields(req) == {"ctidTraderAccountId": ACC, "positionId": 555}


def test_place_limit_order_uses_the_limit_price_and_good_till_cancel() -> None:
    req = build_request(place())
    assert isinstance(req, pb.ProtoOANewOrderReq)
    assert fields(req) == {
        "ctidTraderAccountId": ACC,
        "symbolId": 12,
        "orderType": model_pb2.LIMIT,
        "tradeSide": model_pb2.BUY,
        "volume": 500,
        "limitPrice": 2340.5,
        "label": "cm1:o7",
        "clientOrderId": "cid-7",
    }
    assert req.timeInForce == model_pb2.GOOD_TILL_CANCEL  # the default, left off the wire


def test_place_stop_order_with_protection_and_expiry_is_good_till_date() -> None:
    req = build_request(
        place(
            kind=OrderKind.STOP,
            side=Side.SELL,
            price=2330.0,
            stop_loss=2340.0,
            take_profit=2300.0,
            expiration_ms=1_700_000_123_000,
        )
    )
    assert fields(req) == {
        "ctidTraderAccountId": ACC,
        "symbolId": 12,
        "orderType": model_pb2.STOP,
        "tradeSide": model_pb2.SELL,
        "volume": 500,
        "stopPrice": 2330.0,
        "stopLoss": 2340.0,
        "takeProfit": 2300.0,
        "timeInForce": model_pb2.GOOD_TILL_DATE,
        "expirationTimestamp": 1_700_000_123_000,
        "label": "cm1:o7",
        "clientOrderId": "cid-7",
    }


def test_amend_limit_order() -> None:
    req = build_request(amend())
    assert isinstance(req, pb.ProtoOAAmendOrderReq)
    assert fields(req) == {
        "ctidTraderAccountId": ACC,
        "orderId": 99,
        "volume": 700,
        "limitPrice": 2338.0,
    }


def test_amend_stop_order_with_everything() -> None:
    req = build_request(
        amend(kind=OrderKind.STOP, stop_loss=2320.0, take_profit=2360.0, expiration_ms=42)
    )
    assert fields(req) == {
        "ctidTraderAccountId": ACC,
        "orderId": 99,
        "volume": 700,
        "stopPrice": 2338.0,
        "stopLoss": 2320.0,
        "takeProfit": 2360.0,
        "expirationTimestamp": 42,
    }


def test_cancel_order() -> None:
    req = build_request(CancelPendingOrder(ACC, "o7", 99))
    assert isinstance(req, pb.ProtoOACancelOrderReq)
    assert fields(req) == {"ctidTraderAccountId": ACC, "orderId": 99}


def test_every_request_is_complete_on_the_wire() -> None:
    intents: list[Intent] = [
        open_position(slippage_points=5, base_price=1.1, relative_stop_loss=1),
        ClosePosition(ACC, "p1", 1, 1),
        AmendPositionProtection(ACC, "p1", 1, 1.0, 2.0),
        place(expiration_ms=5),
        amend(),
        CancelPendingOrder(ACC, "o1", 1),
    ]
    for intent in intents:
        req = build_request(intent)
        assert req.IsInitialized(), type(intent).__name__
        req.SerializeToString()  # raises when a required field is missing


def test_an_unknown_intent_fails_loudly_in_every_dispatch() -> None:
    # mypy rejects it at the call; at run time assert_never raises (python -O keeps it:
    # it is a call, not an assert statement)
    class Mystery:
        follower_account_id = ACC

    dispatches: list[Callable[[Any], object]] = [
        build_request,
        completion_types,
        priority_of,
        reduces_risk,
        lambda intent: summarize(intent, SYMBOLS, {}),
    ]
    for dispatch in dispatches:
        with pytest.raises(AssertionError, match="Mystery"):
            dispatch(Mystery())


# completion and priority ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("intent", "outcomes"),
    [
        (
            open_position(),
            {model_pb2.ORDER_FILLED, model_pb2.ORDER_CANCELLED, model_pb2.ORDER_EXPIRED},
        ),
        (ClosePosition(ACC, "p1", 1, 1), {model_pb2.ORDER_FILLED, model_pb2.ORDER_CANCELLED}),
        (AmendPositionProtection(ACC, "p1", 1, None, None), {model_pb2.ORDER_REPLACED}),
        (place(), {model_pb2.ORDER_ACCEPTED}),
        (amend(), {model_pb2.ORDER_REPLACED}),
        (CancelPendingOrder(ACC, "o1", 1), {model_pb2.ORDER_CANCELLED}),
    ],
)
def test_completion_types(intent: Any, outcomes: set[int]) -> None:
    assert {model_pb2.ORDER_REJECTED, model_pb2.ORDER_CANCEL_REJECTED} == REJECTED
    assert completion_types(intent) == outcomes | REJECTED


def test_a_pending_order_is_not_complete_when_merely_filled() -> None:
    # a resting copy is done once accepted; waiting for a fill would hang the worker
    assert model_pb2.ORDER_FILLED not in completion_types(place())
    assert model_pb2.ORDER_ACCEPTED not in completion_types(open_position())


@pytest.mark.parametrize(
    ("intent", "priority"),
    [
        (open_position(), Priority.INCREASE),
        (place(), Priority.INCREASE),
        (amend(), Priority.INCREASE),
        (ClosePosition(ACC, "p1", 1, 1), Priority.REDUCE),
        (AmendPositionProtection(ACC, "p1", 1, None, None), Priority.REDUCE),
        (CancelPendingOrder(ACC, "o1", 1), Priority.REDUCE),
    ],
)
def test_priority_of(intent: Any, priority: Priority) -> None:
    assert priority_of(intent) is priority
    assert intent.reduces_risk is reduces_risk(intent) is (priority is Priority.REDUCE)


# summarize -----------------------------------------------------------------------------
def test_summarize_open_lots_formatting() -> None:
    def text(volume: int, symbol_id: int = 11) -> str:
        return summarize(open_position(volume=volume, symbol_id=symbol_id), SYMBOLS, {})

    assert text(10_000_000) == "open sell 1.00 lot EURUSD"
    assert text(2_500_000) == "open sell 0.25 lots EURUSD"
    assert text(12_000_000) == "open sell 1.20 lots EURUSD"
    assert text(20_000_000) == "open sell 2.00 lots EURUSD"
    assert text(10_000) == "open sell 0.001 lots EURUSD"
    assert text(100, symbol_id=12) == "open sell 0.01 lots XAUUSD"
    assert text(700, symbol_id=99) == "open sell 700 cents symbol 99"


def test_summarize_close_whole_partial_and_unknown() -> None:
    position = Position(555, 11, Side.BUY, 10_000_000, 1.08)
    positions = {555: position}
    assert summarize(ClosePosition(ACC, "p1", 555, 10_000_000), SYMBOLS, positions) == (
        "close 1.00 lot EURUSD"
    )
    assert summarize(ClosePosition(ACC, "p1", 555, 4_000_000), SYMBOLS, positions) == (
        "partial close 0.40 lots EURUSD"
    )
    assert summarize(ClosePosition(ACC, "p1", 556, 4_000_000), SYMBOLS, positions) == (
        "close position 556"
    )


def test_summarize_other_intents() -> None:
    assert summarize(AmendPositionProtection(ACC, "p1", 5, 1.07, None), SYMBOLS, {}) == (
        "set SL 1.07 TP None on #5"
    )
    assert summarize(place(), SYMBOLS, {}) == "place buy limit 0.05 lots XAUUSD @ 2340.5"
    assert summarize(amend(), SYMBOLS, {}) == "amend order #99 @ 2338.0"
    assert summarize(CancelPendingOrder(ACC, "o1", 99), SYMBOLS, {}) == "cancel order #99"

"""The trading engine without sockets: fills, closes, netting, pending orders, stops, P&L."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.message import Message

from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.sim import AccountEvent, Broker, Market, Rejected, SimConfig
from cmamd.sim.snapshots import Side

m = messages_pb2
MASTER = 3_101_001
NETTED = 3_101_002
EURUSD, USDJPY, XAUUSD = 1, 3, 4


class Engine:
    """A broker on a fake clock, with helpers that build the requests a client would send."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.now = 1_700_000_000.0
        self.config = config or SimConfig.default()
        self.market = Market(self.config.brokers, self.config.seed)
        self.broker = Broker(self.config, self.market, clock=lambda: self.now)

    def order(self, account: int = MASTER, **fields: Any) -> list[Message]:
        request = m.ProtoOANewOrderReq(
            ctidTraderAccountId=account,
            **{"symbolId": EURUSD, "orderType": model_pb2.MARKET, "volume": 100_000, **fields},
        )
        if not request.HasField("tradeSide"):
            request.tradeSide = model_pb2.BUY
        return messages(self.broker.new_order(request))

    def close(self, position_id: int, volume: int, account: int = MASTER) -> list[Message]:
        request = m.ProtoOAClosePositionReq(
            ctidTraderAccountId=account, positionId=position_id, volume=volume
        )
        return messages(self.broker.close_position(request))

    def price(self, name: str, bid: float, ask: float) -> list[Message]:
        events: list[AccountEvent] = []
        for change in self.market.set_price(name, bid, ask):
            events += self.broker.on_price_change(change.broker, change.symbol_id)
        return messages(events)


def messages(events: list[AccountEvent]) -> list[Message]:
    for event in events:
        codec.encode(event.message)  # every required proto2 field is filled
    return [e.message for e in events]


def kinds(events: list[Message]) -> list[str]:
    return [
        model_pb2.ProtoOAExecutionType.Name(e.executionType)
        if isinstance(e, m.ProtoOAExecutionEvent)
        else type(e).__name__
        for e in events
    ]


def rejection(call: Any) -> str:
    with pytest.raises(Rejected) as caught:
        call()
    return caught.value.code


def config_with(symbol: str = "EURUSD", **symbol_fields: Any) -> SimConfig:
    data = SimConfig.default().model_dump()
    for broker in data["brokers"]:
        for entry in broker["symbols"]:
            if entry["name"] == symbol:
                entry.update(symbol_fields)
    return SimConfig.model_validate(data)


@pytest.fixture
def engine() -> Engine:
    return Engine()


def test_market_order_is_accepted_then_filled_at_the_ask(engine: Engine) -> None:
    events = engine.order(relativeStopLoss=500, relativeTakeProfit=1000, label="copy:1")
    assert kinds(events) == ["ORDER_ACCEPTED", "ORDER_FILLED"]
    accepted, filled = events
    assert isinstance(accepted, m.ProtoOAExecutionEvent) and isinstance(
        filled, m.ProtoOAExecutionEvent
    )
    assert accepted.order.orderStatus == model_pb2.ORDER_STATUS_ACCEPTED
    assert not accepted.HasField("position") and not accepted.HasField("deal")
    assert filled.order.orderStatus == model_pb2.ORDER_STATUS_FILLED
    assert filled.deal.executionPrice == filled.position.price == 1.0801
    # Relative stops are in 1/100000 from the fill price: 1.0801 -/+ 0.005/0.01.
    assert (filled.position.stopLoss, filled.position.takeProfit) == (1.0751, 1.0901)
    assert filled.position.tradeData.label == "copy:1"
    [position] = engine.broker.positions(MASTER)
    assert (position.side, position.volume, position.entry_price) == (Side.BUY, 100_000, 1.0801)


def test_hedged_orders_open_separate_positions(engine: Engine) -> None:
    engine.order()
    engine.order(tradeSide=model_pb2.SELL)
    sides = [(p.side, p.entry_price) for p in engine.broker.positions(MASTER)]
    assert sides == [(Side.BUY, 1.0801), (Side.SELL, 1.08)]


def test_partial_then_full_close_realises_pnl(engine: Engine) -> None:
    position_id = engine.order(volume=300_000)[1].position.positionId  # type: ignore[attr-defined]
    engine.price("EURUSD", 1.08110, 1.08120)
    partial = engine.close(position_id, 100_000)
    assert kinds(partial) == ["ORDER_ACCEPTED", "ORDER_FILLED", "ProtoOATraderUpdatedEvent"]
    filled = partial[1]
    assert isinstance(filled, m.ProtoOAExecutionEvent)
    assert filled.order.closingOrder and filled.order.tradeData.tradeSide == model_pb2.SELL
    assert filled.deal.executionPrice == 1.0811  # a buy closes at the bid
    detail = filled.deal.closePositionDetail
    assert (detail.closedVolume, detail.grossProfit, detail.entryPrice) == (100_000, 100, 1.0801)
    assert filled.position.positionStatus == model_pb2.POSITION_STATUS_OPEN
    assert filled.position.tradeData.volume == 200_000

    final = engine.close(position_id, 200_000)[1]
    assert isinstance(final, m.ProtoOAExecutionEvent)
    assert final.position.positionStatus == model_pb2.POSITION_STATUS_CLOSED
    assert final.position.tradeData.volume == 0
    assert engine.broker.positions(MASTER) == []
    assert engine.broker.trader(MASTER).balance == Decimal("100003.00")
    assert final.deal.closePositionDetail.balance == 10_000_300


def test_close_volume_must_fit_the_position_and_the_step(engine: Engine) -> None:
    position_id = engine.order(volume=200_000)[1].position.positionId  # type: ignore[attr-defined]
    assert rejection(lambda: engine.close(position_id, 300_000)) == "TRADING_BAD_VOLUME"
    assert rejection(lambda: engine.close(position_id, 150_000)) == "TRADING_BAD_VOLUME"
    assert rejection(lambda: engine.close(position_id, 0)) == "TRADING_BAD_VOLUME"
    assert rejection(lambda: engine.close(999, 100_000)) == "POSITION_NOT_FOUND"


def test_netted_account_increases_reduces_and_reverses_one_position(engine: Engine) -> None:
    first = engine.order(NETTED, volume=100_000)[1]
    position_id = first.position.positionId  # type: ignore[attr-defined]
    engine.price("EURUSD", 1.08100, 1.08110)
    grown = engine.order(NETTED, volume=300_000)[1]
    assert grown.position.positionId == position_id  # type: ignore[attr-defined]
    [position] = engine.broker.positions(NETTED)
    # Volume-weighted entry: (1.0801 * 1 + 1.0811 * 3) / 4.
    assert position.volume == 400_000 and position.entry_price == pytest.approx(1.0808_5)

    reduced = engine.order(NETTED, volume=100_000, tradeSide=model_pb2.SELL)
    assert kinds(reduced)[-1] == "ProtoOATraderUpdatedEvent"
    [position] = engine.broker.positions(NETTED)
    assert (position.side, position.volume) == (Side.BUY, 300_000)

    reversed_ = engine.order(NETTED, volume=500_000, tradeSide=model_pb2.SELL)[1]
    assert isinstance(reversed_, m.ProtoOAExecutionEvent)
    assert reversed_.deal.closePositionDetail.closedVolume == 300_000
    [position] = engine.broker.positions(NETTED)
    assert (position.position_id, position.side, position.volume) == (
        position_id,
        Side.SELL,
        200_000,
    )
    assert position.entry_price == 1.081


def test_pending_limit_is_accepted_then_filled_when_the_price_crosses(engine: Engine) -> None:
    accepted = engine.order(orderType=model_pb2.LIMIT, limitPrice=1.07500, takeProfit=1.09)[0]
    assert isinstance(accepted, m.ProtoOAExecutionEvent)
    assert accepted.position.positionStatus == model_pb2.POSITION_STATUS_CREATED
    assert accepted.order.timeInForce == model_pb2.GOOD_TILL_CANCEL
    assert engine.price("EURUSD", 1.07600, 1.07610) == []
    filled = engine.price("EURUSD", 1.07400, 1.07410)
    assert kinds(filled) == ["ORDER_FILLED"]
    event = filled[0]
    assert isinstance(event, m.ProtoOAExecutionEvent)
    assert event.isServerEvent and event.deal.executionPrice == 1.075
    assert event.position.positionId == accepted.position.positionId
    assert event.position.takeProfit == 1.09
    assert engine.broker.orders(MASTER) == []


def test_stop_order_fills_at_the_market_past_its_price(engine: Engine) -> None:
    engine.order(orderType=model_pb2.STOP, tradeSide=model_pb2.SELL, stopPrice=1.07000)
    filled = engine.price("EURUSD", 1.06900, 1.06910)[0]
    assert filled.deal.executionPrice == 1.069  # type: ignore[attr-defined]


def test_pending_price_on_the_wrong_side_is_bad_prices(engine: Engine) -> None:
    assert rejection(lambda: engine.order(orderType=model_pb2.LIMIT, limitPrice=1.0802)) == (
        "TRADING_BAD_PRICES"
    )
    assert rejection(lambda: engine.order(orderType=model_pb2.STOP, stopPrice=1.0800)) == (
        "TRADING_BAD_PRICES"
    )
    assert rejection(lambda: engine.order(orderType=model_pb2.LIMIT)) == "TRADING_BAD_PRICES"
    assert rejection(lambda: engine.order(orderType=model_pb2.LIMIT, limitPrice=1.079001)) == (
        "TRADING_BAD_PRICES"
    )


def test_amend_and_cancel_pending_order(engine: Engine) -> None:
    order_id = engine.order(orderType=model_pb2.LIMIT, limitPrice=1.07)[0].order.orderId  # type: ignore[attr-defined]
    amended = messages(
        engine.broker.amend_order(
            m.ProtoOAAmendOrderReq(
                ctidTraderAccountId=MASTER, orderId=order_id, limitPrice=1.071, volume=200_000
            )
        )
    )
    assert kinds(amended) == ["ORDER_REPLACED"]
    [order] = engine.broker.orders(MASTER)
    assert (order.limit_price, order.volume) == (1.071, 200_000)
    cancel = m.ProtoOACancelOrderReq(ctidTraderAccountId=MASTER, orderId=order_id)
    assert kinds(messages(engine.broker.cancel_order(cancel))) == ["ORDER_CANCELLED"]
    assert engine.broker.orders(MASTER) == []
    assert rejection(lambda: engine.broker.cancel_order(cancel)) == "ORDER_NOT_FOUND"


def test_good_till_date_orders_expire(engine: Engine) -> None:
    expiry = int(engine.now * 1000) + 60_000
    engine.order(
        orderType=model_pb2.LIMIT,
        limitPrice=1.07,
        timeInForce=model_pb2.GOOD_TILL_DATE,
        expirationTimestamp=expiry,
    )
    assert engine.broker.expire_orders() == []
    engine.now += 60
    expired = messages(engine.broker.expire_orders())
    assert kinds(expired) == ["ORDER_EXPIRED"]
    assert expired[0].order.orderStatus == model_pb2.ORDER_STATUS_EXPIRED  # type: ignore[attr-defined]
    assert engine.broker.orders(MASTER) == []
    gtd: dict[str, Any] = {
        "orderType": model_pb2.LIMIT,
        "limitPrice": 1.07,
        "timeInForce": model_pb2.GOOD_TILL_DATE,
    }
    assert rejection(lambda: engine.order(**gtd)) == "TRADING_BAD_EXPIRATION_DATE"
    past = int(engine.now * 1000) - 1
    assert rejection(lambda: engine.order(**gtd, expirationTimestamp=past)) == (
        "TRADING_BAD_EXPIRATION_DATE"
    )


def test_stop_loss_and_take_profit_trigger_server_closes(engine: Engine) -> None:
    engine.order(relativeStopLoss=10)  # buy at 1.0801, stop 0.0001 lower at 1.0800
    engine.order(tradeSide=model_pb2.SELL, relativeTakeProfit=50)  # sell at 1.0800, TP 1.0795
    assert engine.price("EURUSD", 1.08005, 1.08015) == []
    events = engine.price("EURUSD", 1.07940, 1.07950)
    assert kinds(events) == ["ORDER_ACCEPTED", "ORDER_FILLED", "ProtoOATraderUpdatedEvent"] * 2
    stop = events[1]
    assert isinstance(stop, m.ProtoOAExecutionEvent)
    assert stop.isServerEvent and stop.order.orderType == model_pb2.STOP_LOSS_TAKE_PROFIT
    assert stop.order.closingOrder and stop.deal.executionPrice == 1.0794
    assert stop.deal.closePositionDetail.grossProfit == -70
    take = events[4]
    assert isinstance(take, m.ProtoOAExecutionEvent)
    assert take.deal.executionPrice == 1.0795  # a sell closes at the ask
    assert take.deal.closePositionDetail.grossProfit == 50
    assert engine.broker.positions(MASTER) == []


def test_amend_position_stops_replaces_both(engine: Engine) -> None:
    position_id = engine.order()[1].position.positionId  # type: ignore[attr-defined]

    def amend(**stops: Any) -> list[Message]:
        request = m.ProtoOAAmendPositionSLTPReq(
            ctidTraderAccountId=MASTER, positionId=position_id, **stops
        )
        return messages(engine.broker.amend_position_sltp(request))

    replaced = amend(stopLoss=1.07, takeProfit=1.09)
    assert kinds(replaced) == ["ORDER_REPLACED"]
    assert replaced[0].position.stopLoss == 1.07  # type: ignore[attr-defined]
    amend(stopLoss=1.075)  # no takeProfit: it is removed
    [position] = engine.broker.positions(MASTER)
    assert (position.stop_loss, position.take_profit) == (1.075, None)
    assert rejection(lambda: amend(stopLoss=1.081)) == "TRADING_BAD_STOPS"  # above the bid
    assert rejection(lambda: amend(takeProfit=1.079)) == "TRADING_BAD_STOPS"


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"volume": 50_000}, "TRADING_BAD_VOLUME"),
        ({"volume": 150_000}, "TRADING_BAD_VOLUME"),
        ({"volume": 10_000_100_000}, "TRADING_BAD_VOLUME"),
        ({"symbolId": 101}, "SYMBOL_NOT_FOUND"),
        ({"stopLoss": 1.07}, "TRADING_BAD_STOPS"),
        ({"relativeStopLoss": 0}, "TRADING_BAD_STOPS"),
        ({"symbolId": USDJPY, "relativeStopLoss": 150}, "TRADING_BAD_STOPS"),  # 3 digits
        ({"label": "x" * 101}, "INVALID_REQUEST"),
        ({"clientOrderId": "x" * 51}, "INVALID_REQUEST"),
        ({"comment": "x" * 513}, "INVALID_REQUEST"),
        ({"volume": 1_000_000_000}, "NOT_ENOUGH_MONEY"),  # 10M EUR on 100k USD at 1:100
        ({"orderType": model_pb2.STOP_LIMIT, "stopPrice": 1.09}, "INVALID_REQUEST"),
        (
            {"orderType": model_pb2.LIMIT, "limitPrice": 1.07, "stopLoss": 1.071},
            "TRADING_BAD_STOPS",
        ),
        ({"positionId": 12345}, "POSITION_NOT_FOUND"),
    ],
)
def test_validation_codes(engine: Engine, fields: dict[str, Any], code: str) -> None:
    assert rejection(lambda: engine.order(**fields)) == code
    assert engine.broker.positions(MASTER) == [] and engine.broker.orders(MASTER) == []


def test_texts_at_their_limits_are_accepted(engine: Engine) -> None:
    engine.order(label="x" * 100, clientOrderId="y" * 50, comment="z" * 512)
    assert engine.broker.positions(MASTER)[0].label == "x" * 100


def test_symbol_trading_modes_and_short_selling() -> None:
    disabled = Engine(config_with(trading_mode="disabled"))
    assert rejection(lambda: disabled.order()) == "TRADING_DISABLED"

    close_only = Engine(config_with(trading_mode="close_only"))
    assert rejection(lambda: close_only.order()) == "TRADING_DISABLED"

    no_shorts = Engine(config_with(short_selling=False))
    assert (
        rejection(lambda: no_shorts.order(tradeSide=model_pb2.SELL)) == "SHORT_SELLING_NOT_ALLOWED"
    )
    no_shorts.order(NETTED, volume=200_000)
    no_shorts.order(NETTED, volume=100_000, tradeSide=model_pb2.SELL)  # reducing a long is fine
    assert (
        rejection(lambda: no_shorts.order(NETTED, volume=200_000, tradeSide=model_pb2.SELL))
        == "SHORT_SELLING_NOT_ALLOWED"
    )


def test_close_only_symbol_still_closes_positions(engine: Engine) -> None:
    position_id = engine.order(volume=200_000)[1].position.positionId  # type: ignore[attr-defined]
    engine.market.set_trading_mode("EURUSD", "close_only")
    assert rejection(lambda: engine.order()) == "TRADING_DISABLED"
    engine.close(position_id, 100_000)
    engine.market.set_trading_mode("EURUSD", "disabled")
    assert rejection(lambda: engine.close(position_id, 100_000)) == "TRADING_DISABLED"


def test_market_range_fills_inside_the_range_and_cancels_outside(engine: Engine) -> None:
    base: dict[str, Any] = {"orderType": model_pb2.MARKET_RANGE, "baseSlippagePrice": 1.08000}
    inside = engine.order(**base, slippageInPoints=10)  # ask 1.0801 is 10 points worse
    assert kinds(inside) == ["ORDER_ACCEPTED", "ORDER_FILLED"]
    outside = engine.order(**base, slippageInPoints=9)
    assert kinds(outside) == ["ORDER_ACCEPTED", "ORDER_CANCELLED"]
    assert len(engine.broker.positions(MASTER)) == 1
    assert rejection(lambda: engine.order(orderType=model_pb2.MARKET_RANGE)) == "INVALID_REQUEST"


def test_pnl_converts_quote_currency_to_the_deposit_currency(engine: Engine) -> None:
    yen = engine.order(symbolId=USDJPY, volume=1_000_000)[1].position.positionId  # type: ignore[attr-defined]
    gold = engine.order(symbolId=XAUUSD, volume=1_000)[1].position.positionId  # type: ignore[attr-defined]
    engine.price("USDJPY", 152.012, 152.024)
    engine.price("XAUUSD", 2360.35, 2360.70)
    yen_close = engine.close(yen, 1_000_000)[1]
    gold_close = engine.close(gold, 1_000)[1]
    # 10,000 USD bought at 150.012, sold at 152.012: 20,000 JPY at mid 152.018.
    yen_detail = yen_close.deal.closePositionDetail  # type: ignore[attr-defined]
    assert yen_detail.grossProfit == round(20_000 / Decimal("152.018") * 100)
    assert yen_detail.quoteToDepositConversionRate == pytest.approx(1 / 152.018)
    # 10 oz bought at 2350.35, sold at 2360.35: 100 USD.
    assert gold_close.deal.closePositionDetail.grossProfit == 10_000  # type: ignore[attr-defined]


def test_deposit_changes_the_balance_and_reports_it(engine: Engine) -> None:
    events = messages(engine.broker.deposit(MASTER, Decimal("250.50")))
    assert kinds(events) == ["DEPOSIT_WITHDRAW", "ProtoOATraderUpdatedEvent"]
    assert events[0].depositWithdraw.delta == 25_050  # type: ignore[attr-defined]
    assert engine.broker.trader(MASTER).balance == Decimal("100250.50")
    with pytest.raises(ValueError):
        engine.broker.deposit(MASTER, Decimal("-1000000"))


def test_unrealized_pnl_follows_the_closing_price(engine: Engine) -> None:
    engine.order(volume=1_000_000)  # 10,000 EUR bought at 1.0801
    engine.price("EURUSD", 1.08210, 1.08220)
    assert engine.broker.unrealized_pnl(MASTER) == Decimal("20.00")

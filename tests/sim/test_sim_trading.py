"""Trading and account data over real sockets: event fan-out, clientMsgId rules, spots."""

from __future__ import annotations

from decimal import Decimal

import pytest
from order_requests import market_order

from cmamd.protocol.codec import Envelope
from cmamd.protocol.errors import OrderError
from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.sim import SimConfig, SimServer

from .simkit import Connect, account_id, authorised_client

m = messages_pb2


def execution_types(envelopes: list[Envelope]) -> list[str]:
    names = []
    for envelope in envelopes:
        message = envelope.message
        if isinstance(message, m.ProtoOAExecutionEvent):
            names.append(model_pb2.ProtoOAExecutionType.Name(message.executionType))
        else:
            names.append(type(message).__name__)
    return names


async def test_market_order_events_reach_every_connection_of_the_account(
    server: SimServer, open_client: Connect
) -> None:
    trader = await authorised_client(open_client, server, "master")
    daemon = await authorised_client(open_client, server, "master", "follower-hedged")
    bystander = await authorised_client(open_client, server, "follower-hedged")
    master = account_id(server.config, "master")

    await trader.send(market_order(master), "order-1")
    own = await trader.drain()
    assert execution_types(own) == ["ORDER_ACCEPTED", "ORDER_FILLED"]
    # Only the first reply is correlated; the follow-up event is a push.
    assert [e.client_msg_id for e in own] == ["order-1", None]

    seen = await daemon.drain()
    assert execution_types(seen) == ["ORDER_ACCEPTED", "ORDER_FILLED"]
    assert [e.client_msg_id for e in seen] == [None, None]
    assert seen[1].message == own[1].message
    assert await bystander.drain() == []

    filled = own[1].message
    assert isinstance(filled, m.ProtoOAExecutionEvent)
    accepted = own[0].message
    assert isinstance(accepted, m.ProtoOAExecutionEvent)
    assert accepted.order.executedVolume == 0 and not accepted.HasField("position")
    assert filled.position.positionStatus == model_pb2.POSITION_STATUS_OPEN
    assert filled.deal.executionPrice == 1.0801  # bought at the ask
    assert filled.order.executedVolume == 100_000


async def test_trades_made_from_ctrader_reach_the_daemon_without_client_msg_id(
    server: SimServer, open_client: Connect
) -> None:
    daemon = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    position_id = server.place_market_order(master, "EURUSD", "sell", 200_000)
    server.set_price("EURUSD", 1.07900, 1.07910)
    server.close_position(master, position_id, 100_000)

    seen = await daemon.drain()
    assert execution_types(seen) == [
        "ORDER_ACCEPTED",
        "ORDER_FILLED",
        "ORDER_ACCEPTED",
        "ORDER_FILLED",
        "ProtoOATraderUpdatedEvent",
    ]
    assert all(e.client_msg_id is None for e in seen)
    partial = seen[3].message
    assert isinstance(partial, m.ProtoOAExecutionEvent)
    assert partial.order.closingOrder
    assert partial.position.tradeData.volume == 100_000
    assert partial.position.positionStatus == model_pb2.POSITION_STATUS_OPEN
    detail = partial.deal.closePositionDetail
    # Sold 1000 units at 1.08000, bought back at the ask 1.07910: +0.90 USD.
    assert (detail.entryPrice, detail.grossProfit, detail.closedVolume) == (1.08, 90, 100_000)
    updated = seen[4].message
    assert isinstance(updated, m.ProtoOATraderUpdatedEvent)
    assert updated.trader.balance == detail.balance == 10_000_090


async def test_rejection_is_an_order_error_event_to_the_requester_only(
    server: SimServer, open_client: Connect
) -> None:
    trader = await authorised_client(open_client, server, "master")
    daemon = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    reply = await trader.request(market_order(master, volume=150_000), "bad-volume")
    assert isinstance(reply.message, m.ProtoOAOrderErrorEvent)
    assert reply.message.errorCode == "TRADING_BAD_VOLUME"
    assert reply.message.ctidTraderAccountId == master
    assert reply.client_msg_id == "bad-volume"
    assert await daemon.drain() == []
    assert server.broker.positions(master) == []


async def test_close_of_unknown_position_is_position_not_found(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    reply = await client.request(
        m.ProtoOAClosePositionReq(ctidTraderAccountId=master, positionId=42, volume=100_000)
    )
    assert isinstance(reply.message, m.ProtoOAOrderErrorEvent)
    assert reply.message.errorCode == "POSITION_NOT_FOUND"
    assert reply.message.positionId == 42


async def test_pending_fill_on_price_cross_is_a_server_event(
    server: SimServer, open_client: Connect
) -> None:
    daemon = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    reply = await daemon.request(
        m.ProtoOANewOrderReq(
            ctidTraderAccountId=master,
            symbolId=1,
            orderType=model_pb2.LIMIT,
            tradeSide=model_pb2.BUY,
            volume=100_000,
            limitPrice=1.07500,
            stopLoss=1.07000,
        ),
        "limit",
    )
    accepted = reply.message
    assert isinstance(accepted, m.ProtoOAExecutionEvent)
    assert accepted.executionType == model_pb2.ORDER_ACCEPTED
    assert accepted.position.positionStatus == model_pb2.POSITION_STATUS_CREATED
    server.set_price("EURUSD", 1.07490, 1.07500)
    filled = await daemon.recv()
    assert isinstance(filled.message, m.ProtoOAExecutionEvent)
    assert filled.client_msg_id is None
    assert filled.message.executionType == model_pb2.ORDER_FILLED
    assert filled.message.isServerEvent
    assert filled.message.position.positionId == accepted.position.positionId
    assert filled.message.position.stopLoss == 1.07
    assert filled.message.deal.executionPrice == 1.075


async def test_reconcile_lists_open_positions_and_pending_orders(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server, "follower-suffix")
    follower = account_id(server.config, "follower-suffix")
    position_id = server.place_market_order(follower, "XAUUSD.m", "buy", 100)
    order_id = server.place_pending_order(follower, "EURUSD.m", "sell", "limit", 100_000, 1.09)
    await client.drain()
    reply = await client.request(m.ProtoOAReconcileReq(ctidTraderAccountId=follower))
    assert isinstance(reply.message, m.ProtoOAReconcileRes)
    assert [p.positionId for p in reply.message.position] == [position_id]
    assert reply.message.position[0].tradeData.symbolId == 104
    assert [o.orderId for o in reply.message.order] == [order_id]
    assert reply.message.order[0].limitPrice == 1.09


async def test_account_data_requests(server: SimServer, open_client: Connect) -> None:
    client = await authorised_client(open_client, server, "follower-netted")
    follower = account_id(server.config, "follower-netted")

    trader = await client.request(m.ProtoOATraderReq(ctidTraderAccountId=follower))
    assert isinstance(trader.message, m.ProtoOATraderRes)
    info = trader.message.trader
    assert (info.balance, info.moneyDigits, info.accountType) == (2_000_000, 2, model_pb2.NETTED)
    assert (info.leverageInCents, info.brokerName) == (10_000, "Demo Markets")
    assert info.traderLogin == server.config.account("follower-netted").trader_login

    assets = await client.request(m.ProtoOAAssetListReq(ctidTraderAccountId=follower))
    assert isinstance(assets.message, m.ProtoOAAssetListRes)
    usd = next(a for a in assets.message.asset if a.name == "USD")
    assert usd.assetId == info.depositAssetId

    symbols = await client.request(m.ProtoOASymbolsListReq(ctidTraderAccountId=follower))
    assert isinstance(symbols.message, m.ProtoOASymbolsListRes)
    names = {s.symbolName: s.symbolId for s in symbols.message.symbol}
    assert names == {"EURUSD": 1, "GBPUSD": 2, "USDJPY": 3, "XAUUSD": 4, "US500": 5}

    full = await client.request(m.ProtoOASymbolByIdReq(ctidTraderAccountId=follower, symbolId=[4]))
    assert isinstance(full.message, m.ProtoOASymbolByIdRes)
    gold = full.message.symbol[0]
    assert (gold.digits, gold.lotSize, gold.minVolume, gold.stepVolume) == (2, 10_000, 100, 100)

    missing = await client.request(
        m.ProtoOASymbolByIdReq(ctidTraderAccountId=follower, symbolId=[101])
    )
    assert missing.message.errorCode == "SYMBOL_NOT_FOUND"  # type: ignore[attr-defined]


async def test_unrealized_pnl_and_deal_list(server: SimServer, open_client: Connect) -> None:
    client = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    position_id = server.place_market_order(master, "USDJPY", "buy", 1_000_000)  # 10,000 USD
    server.set_price("USDJPY", 151.012, 151.024)
    await client.drain()
    pnl = await client.request(m.ProtoOAGetPositionUnrealizedPnLReq(ctidTraderAccountId=master))
    assert isinstance(pnl.message, m.ProtoOAGetPositionUnrealizedPnLRes)
    entry = pnl.message.positionUnrealizedPnL[0]
    # Bought at 150.012, worth 151.012 now: 10,000 JPY, at mid 151.018 JPY per USD.
    assert entry.positionId == position_id
    assert entry.grossUnrealizedPnL == round(10_000 / 151.018 * 100)
    assert pnl.message.moneyDigits == 2

    deals = await client.request(m.ProtoOADealListReq(ctidTraderAccountId=master))
    assert isinstance(deals.message, m.ProtoOADealListRes)
    assert [d.positionId for d in deals.message.deal] == [position_id]
    assert not deals.message.hasMore


async def test_spots_first_event_has_both_sides_then_only_what_moved(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server, "master", "follower-suffix")
    master = account_id(server.config, "master")
    reply = await client.request(
        m.ProtoOASubscribeSpotsReq(ctidTraderAccountId=master, symbolId=[1]), "sub"
    )
    assert isinstance(reply.message, m.ProtoOASubscribeSpotsRes)
    assert reply.client_msg_id == "sub"
    first = await client.recv()
    assert isinstance(first.message, m.ProtoOASpotEvent)
    assert (first.message.bid, first.message.ask) == (108_000, 108_010)
    assert first.client_msg_id is None

    server.set_price("EURUSD", 1.08000, 1.08020)
    moved = await client.recv()
    assert isinstance(moved.message, m.ProtoOASpotEvent)
    assert not moved.message.HasField("bid") and moved.message.ask == 108_020
    # The suffix broker's EURUSD.m is another symbol: nothing for it here.
    server.set_price("EURUSD.m", 1.2, 1.3)
    assert await client.drain() == []

    again = await client.request(
        m.ProtoOASubscribeSpotsReq(ctidTraderAccountId=master, symbolId=[1])
    )
    assert again.message.errorCode == "ALREADY_SUBSCRIBED"  # type: ignore[attr-defined]
    done = await client.request(
        m.ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=master, symbolId=[1])
    )
    assert isinstance(done.message, m.ProtoOAUnsubscribeSpotsRes)
    server.set_price("EURUSD", 1.0801, 1.0802)
    assert await client.drain() == []
    twice = await client.request(
        m.ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=master, symbolId=[1])
    )
    assert twice.message.errorCode == "NOT_SUBSCRIBED_TO_SPOTS"  # type: ignore[attr-defined]


async def test_good_till_date_order_expires_on_the_server_clock(open_client: Connect) -> None:
    async with SimServer(SimConfig.default(timer_interval_s=0.02)) as sim:
        client = await authorised_client(open_client, sim, "master")
        master = account_id(sim.config, "master")
        expiry = sim.broker.now_ms() + 200
        order_id = sim.place_pending_order(
            master, "GBPUSD", "buy", "stop", 100_000, 1.27, expiration_ms=expiry
        )
        accepted = await client.recv()
        assert accepted.message.order.timeInForce == model_pb2.GOOD_TILL_DATE  # type: ignore[attr-defined]
        expired = await client.recv(timeout=3)
        assert isinstance(expired.message, m.ProtoOAExecutionEvent)
        assert expired.message.executionType == model_pb2.ORDER_EXPIRED
        assert expired.message.order.orderId == order_id
        assert expired.message.isServerEvent
        assert sim.broker.now_ms() >= expiry


async def test_manual_trading_goes_through_the_engine_and_reports_refusals(
    server: SimServer, open_client: Connect
) -> None:
    daemon = await authorised_client(open_client, server, "follower-netted")
    follower = account_id(server.config, "follower-netted")
    with pytest.raises(OrderError) as refused:
        server.place_market_order(follower, "EURUSD", "buy", 123)
    assert refused.value.code == "TRADING_BAD_VOLUME"
    position_id = server.place_market_order(follower, "EURUSD", "buy", 100_000)
    server.amend_position_sltp(follower, position_id, stop_loss=1.07)
    order_id = server.place_pending_order(follower, "EURUSD", "sell", "limit", 100_000, 1.085)
    server.amend_pending_order(follower, order_id, price=1.086)
    server.cancel_pending_order(follower, order_id)
    server.deposit(follower, "100.25")
    server.close_position(follower, position_id)
    assert execution_types(await daemon.drain()) == [
        "ORDER_ACCEPTED",
        "ORDER_FILLED",
        "ORDER_REPLACED",
        "ORDER_ACCEPTED",
        "ORDER_REPLACED",
        "ORDER_CANCELLED",
        "DEPOSIT_WITHDRAW",
        "ProtoOATraderUpdatedEvent",
        "ORDER_ACCEPTED",
        "ORDER_FILLED",
        "ProtoOATraderUpdatedEvent",
    ]
    # Bought at 1.0801, closed at the bid 1.0800: -0.10 USD, plus the deposit.
    assert server.broker.trader(follower).balance == Decimal("20100.15")

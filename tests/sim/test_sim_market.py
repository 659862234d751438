"""Quotes: the seeded walk, manual prices, conversion rates, and what clients see of them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cmamd.protocol.proto import messages_pb2
from cmamd.protocol.units import round_price
from cmamd.sim import Market, SimConfig, SimServer

from .simkit import Connect, account_id, authorised_client

m = messages_pb2


@pytest.fixture
def market() -> Market:
    config = SimConfig.default()
    return Market(config.brokers, config.seed)


def test_walk_is_reproducible_keeps_the_spread_and_the_digits() -> None:
    config = SimConfig.default()
    first, second = Market(config.brokers, 7), Market(config.brokers, 7)
    for _ in range(20):
        assert first.walk() == second.walk()
    quote = first.quote("Demo Markets", 3)  # USDJPY, 3 digits, spread 0.012
    assert quote.ask - quote.bid == pytest.approx(0.012)
    assert round_price(quote.bid, 3) == quote.bid
    assert quote != Market(config.brokers, 7).quote("Demo Markets", 3)  # it moved


def test_set_price_checks_and_reports_which_sides_moved(market: Market) -> None:
    [change] = market.set_price("EURUSD", 1.08000, 1.08020)
    assert (change.broker, change.symbol_id, change.bid_changed, change.ask_changed) == (
        "Demo Markets",
        1,
        False,
        True,
    )
    assert market.set_price("EURUSD", 1.08000, 1.08020) == []
    with pytest.raises(ValueError):
        market.set_price("EURUSD", 1.080001, 1.0802)
    with pytest.raises(ValueError):
        market.set_price("EURUSD", 1.09, 1.08)
    with pytest.raises(KeyError):
        market.set_price("EURUSD", 1.08, 1.09, broker="Suffix Markets")
    assert [c.broker for c in market.set_price("XAUUSD.m", 2400.0, 2400.5)] == ["Suffix Markets"]


def test_conversion_rates_direct_inverse_and_cross(market: Market) -> None:
    assert market.conversion_rate("Demo Markets", "USD", "USD") == 1
    assert market.conversion_rate("Demo Markets", "EUR", "USD") == Decimal("1.08005")
    assert market.conversion_rate("Demo Markets", "JPY", "USD") == 1 / Decimal("150.006")
    # No EURJPY symbol: EUR -> USD -> JPY.
    cross = market.conversion_rate("Demo Markets", "EUR", "JPY")
    assert cross == Decimal("1.08005") * Decimal("150.006")
    with pytest.raises(LookupError):
        market.conversion_rate("Demo Markets", "USD", "CHF")


async def test_price_walk_streams_spots_until_paused(open_client: Connect) -> None:
    config = SimConfig.default(price_walk=True, price_walk_interval_s=0.05, timer_interval_s=0.01)
    async with SimServer(config) as sim:
        client = await authorised_client(open_client, sim, "master")
        master = account_id(config, "master")
        await client.request(m.ProtoOASubscribeSpotsReq(ctidTraderAccountId=master, symbolId=[2]))
        await client.recv()  # the current quote
        moved = await client.recv(timeout=2)
        assert isinstance(moved.message, m.ProtoOASpotEvent) and moved.message.symbolId == 2
        sim.pause_prices()
        await client.drain(quiet=0.1)
        assert await client.drain(quiet=0.3) == []
        sim.resume_prices()
        assert isinstance((await client.recv(timeout=2)).message, m.ProtoOASpotEvent)


async def test_trading_mode_change_is_announced_to_accounts_of_that_broker(
    server: SimServer, open_client: Connect
) -> None:
    demo = await authorised_client(open_client, server, "master")
    suffix = await authorised_client(open_client, server, "follower-suffix")
    server.set_trading_mode("EURUSD", "close_only")
    event = await demo.recv()
    assert isinstance(event.message, m.ProtoOASymbolChangedEvent)
    assert list(event.message.symbolId) == [1]
    assert await suffix.drain() == []
    symbol = await demo.request(
        m.ProtoOASymbolByIdReq(
            ctidTraderAccountId=account_id(server.config, "master"), symbolId=[1]
        )
    )
    assert symbol.message.symbol[0].tradingMode == 3  # type: ignore[attr-defined]

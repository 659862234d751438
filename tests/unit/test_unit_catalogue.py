"""The account catalogue: loading in batches, reloading changed symbols, conversion rates."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.message import Message

from cmamd.accounts import catalogue as catalogue_module
from cmamd.accounts.catalogue import Catalogue
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

ACCOUNT = 7
ASSETS = {1: "USD", 2: "EUR", 3: "JPY", 4: "XAU", 5: "GBP"}
# id: (name, base, quote)
SYMBOLS = {
    10: ("EURUSD", 2, 1),
    11: ("USDJPY", 1, 3),
    12: ("XAUUSD", 4, 1),
    13: ("EURJPY", 2, 3),
    14: ("EURGBP", 2, 5),  # GBP has no pair with USD here: no rate
}


class FakeServer:
    def __init__(self) -> None:
        self.lot_sizes = {symbol_id: 10_000_000 for symbol_id in SYMBOLS}
        self.requests: list[Message] = []

    async def request(self, message: Message, **_: Any) -> Message:
        self.requests.append(message)
        if isinstance(message, pb.ProtoOAAssetListReq):
            return pb.ProtoOAAssetListRes(
                ctidTraderAccountId=ACCOUNT,
                asset=[model_pb2.ProtoOAAsset(assetId=i, name=n) for i, n in ASSETS.items()],
            )
        if isinstance(message, pb.ProtoOASymbolsListReq):
            return pb.ProtoOASymbolsListRes(
                ctidTraderAccountId=ACCOUNT,
                symbol=[
                    model_pb2.ProtoOALightSymbol(
                        symbolId=i, symbolName=n, baseAssetId=b, quoteAssetId=q
                    )
                    for i, (n, b, q) in SYMBOLS.items()
                ],
            )
        if isinstance(message, pb.ProtoOASymbolByIdReq):
            return pb.ProtoOASymbolByIdRes(
                ctidTraderAccountId=ACCOUNT,
                symbol=[
                    model_pb2.ProtoOASymbol(
                        symbolId=i,
                        digits=5,
                        pipPosition=4,
                        lotSize=self.lot_sizes[i],
                        minVolume=100_000,
                        stepVolume=100_000,
                        maxVolume=10**10,
                    )
                    for i in message.symbolId
                ],
            )
        if isinstance(message, pb.ProtoOASubscribeSpotsReq):
            return pb.ProtoOASubscribeSpotsRes(ctidTraderAccountId=ACCOUNT)
        raise AssertionError(f"unexpected {type(message).__name__}")


def spot(symbol_id: int, bid: float | None, ask: float | None) -> pb.ProtoOASpotEvent:
    event = pb.ProtoOASpotEvent(ctidTraderAccountId=ACCOUNT, symbolId=symbol_id)
    if bid is not None:
        event.bid = round(bid * 100_000)
    if ask is not None:
        event.ask = round(ask * 100_000)
    return event


async def loaded() -> tuple[Catalogue, FakeServer]:
    server, catalogue = FakeServer(), Catalogue(ACCOUNT)
    await catalogue.load(server.request)
    return catalogue, server


async def test_details_are_fetched_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogue_module, "SYMBOL_DETAIL_BATCH", 2)
    catalogue, server = await loaded()
    batches = [list(r.symbolId) for r in server.requests if isinstance(r, pb.ProtoOASymbolByIdReq)]
    assert batches == [[10, 11], [12, 13], [14]]
    assert catalogue.symbols_by_name["XAUUSD"].symbol_id == 12
    assert catalogue.loaded


async def test_a_changed_symbol_is_reloaded_in_place() -> None:
    catalogue, server = await loaded()
    by_name = catalogue.symbols_by_name  # the account state shares these dicts
    server.lot_sizes[12] = 10_000
    assert await catalogue.reload(server.request, [12, 999]) == ["XAUUSD"]
    assert by_name["XAUUSD"].lot_size == 10_000
    assert catalogue.symbols_by_id[12].lot_size == 10_000
    assert await catalogue.reload(server.request, [999]) == []  # unknown ids: nothing to ask


async def test_conversion_pairs_cover_every_quote_currency_that_has_one() -> None:
    catalogue, server = await loaded()
    # JPY via USDJPY; USD needs none; GBP has no pair with USD on this broker
    assert catalogue.conversion_symbols("USD") == [11]
    assert await catalogue.subscribe_conversion_quotes(server.request, "USD") == 1
    (subscribe,) = [r for r in server.requests if isinstance(r, pb.ProtoOASubscribeSpotsReq)]
    assert list(subscribe.symbolId) == [11]
    # a EUR account converts USD, JPY and GBP quotes through EURUSD, EURJPY and EURGBP
    assert catalogue.conversion_symbols("EUR") == [10, 13, 14]


async def test_quote_to_deposit_direct_inverted_and_unknown() -> None:
    catalogue, _ = await loaded()
    specs = catalogue.symbols_by_name
    assert catalogue.quote_to_deposit(specs["EURUSD"], "USD") == Decimal(1)
    assert catalogue.quote_to_deposit(specs["USDJPY"], "USD") is None  # no quote yet
    catalogue.on_spot(spot(11, 150.000, 150.010))
    rate = catalogue.quote_to_deposit(specs["EURJPY"], "USD")
    assert rate is not None and abs(rate - 1 / Decimal("150.005")) < Decimal("1e-12")
    catalogue.on_spot(spot(10, 1.08000, 1.08010))
    assert catalogue.quote_to_deposit(specs["XAUUSD"], "EUR") == 1 / Decimal("1.08005")
    assert catalogue.quote_to_deposit(specs["EURGBP"], "USD") is None


async def test_a_spot_with_one_side_keeps_the_other() -> None:
    catalogue, _ = await loaded()
    catalogue.on_spot(spot(11, 150.000, 150.010))
    catalogue.on_spot(spot(11, None, 150.020))
    assert (catalogue.quotes[11].bid, catalogue.quotes[11].ask) == (150.0, 150.02)

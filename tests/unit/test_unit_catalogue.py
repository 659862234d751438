"""The account catalogue: loading in batches, reloading changed symbols, conversion rates
found through asset ids (direct, inverted, two steps), whatever the broker names symbols."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.message import Message

from cmamd.accounts import catalogue as catalogue_module
from cmamd.accounts import conversion
from cmamd.accounts.catalogue import Catalogue
from cmamd.accounts.model import Quote
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

ACCOUNT = 7
USD, EUR, JPY, XAU, GBP, CHF, SGD = 1, 2, 3, 4, 5, 6, 7
ASSETS = {USD: "USD", EUR: "EUR", JPY: "JPY", XAU: "XAU", GBP: "GBP", CHF: "CHF", SGD: "SGD"}
# id: (name, base, quote)
SYMBOLS = {
    10: ("EURUSD", 2, 1),
    11: ("USDJPY", 1, 3),
    12: ("XAUUSD", 4, 1),
    13: ("EURJPY", 2, 3),
    14: ("EURGBP", 2, 5),  # GBP has no pair with USD here: two steps, through EUR
    15: ("CHFSGD", 6, 7),  # neither connects to anything else: no rate
}


class FakeServer:
    def __init__(self, symbols: dict[int, tuple[str, int, int]] | None = None) -> None:
        self.symbols = SYMBOLS if symbols is None else symbols
        self.lot_sizes = {symbol_id: 10_000_000 for symbol_id in self.symbols}
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
                    for i, (n, b, q) in self.symbols.items()
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
    assert batches == [[10, 11], [12, 13], [14, 15]]
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
    # USD needs none; JPY via USDJPY; GBP has no USD pair: GBP -> EUR -> USD (EURGBP, EURUSD)
    assert catalogue.conversion_symbols(USD) == [10, 11, 14]
    assert await catalogue.subscribe_conversion_quotes(server.request, USD) == 3
    (subscribe,) = [r for r in server.requests if isinstance(r, pb.ProtoOASubscribeSpotsReq)]
    assert list(subscribe.symbolId) == [10, 11, 14]
    # a EUR account converts USD, JPY and GBP quotes through EURUSD, EURJPY and EURGBP
    assert catalogue.conversion_symbols(EUR) == [10, 13, 14]
    assert catalogue.conversion_symbols(0) == [], "an unknown deposit asset converts nothing"


async def test_quote_to_deposit_direct_inverted_two_steps_and_unknown() -> None:
    catalogue, _ = await loaded()
    specs = catalogue.symbols_by_name
    assert catalogue.quote_to_deposit(specs["EURUSD"], USD) == Decimal(1)
    assert catalogue.quote_to_deposit(specs["USDJPY"], USD) is None  # no quote yet
    catalogue.on_spot(spot(11, 150.000, 150.010))
    rate = catalogue.quote_to_deposit(specs["EURJPY"], USD)
    assert rate == 1 / Decimal("150.005")
    assert catalogue.quote_to_deposit(specs["EURGBP"], USD) is None  # EURGBP not quoted yet
    catalogue.on_spot(spot(10, 1.08000, 1.08010))
    assert catalogue.quote_to_deposit(specs["XAUUSD"], EUR) == 1 / Decimal("1.08005")
    catalogue.on_spot(spot(14, 0.85000, 0.85010))
    # 1 GBP = 1/0.85005 EUR, 1 EUR = 1.08005 USD
    two_steps = catalogue.quote_to_deposit(specs["EURGBP"], USD)
    assert two_steps == 1 / Decimal("0.85005") * Decimal("1.08005")
    assert catalogue.quote_to_deposit(specs["CHFSGD"], USD) is None, "SGD connects to nothing"


async def test_conversion_finds_pairs_by_asset_ids_whatever_the_names() -> None:
    """A broker whose names carry a suffix, a prefix or a slash: same pairs, same rates."""
    renamed = {
        sid: (f"{n[:3]}/{n[3:]}" if sid % 2 else f"fx.{n}.m", b, q)
        for sid, (n, b, q) in SYMBOLS.items()
    }
    server, catalogue = FakeServer(renamed), Catalogue(ACCOUNT)
    await catalogue.load(server.request)
    assert "USD/JPY" in catalogue.symbols_by_name and "fx.EURUSD.m" in catalogue.symbols_by_name
    assert catalogue.conversion_symbols(USD) == [10, 11, 14]
    catalogue.on_spot(spot(11, 150.000, 150.010))
    jpy = catalogue.quote_to_deposit(catalogue.symbols_by_name["USD/JPY"], USD)
    assert jpy == 1 / Decimal("150.005")


def test_conversion_path_is_the_shortest_through_the_lowest_ids() -> None:
    pairs = {symbol_id: (base, quote) for symbol_id, (_, base, quote) in SYMBOLS.items()}
    assert conversion.path(pairs, USD, USD) == ()
    assert conversion.path(pairs, JPY, USD) == (conversion.Leg(11, divide=True),)
    # GBP -> EUR -> USD: divide by EURGBP, multiply by EURUSD
    assert conversion.path(pairs, GBP, USD) == (
        conversion.Leg(14, divide=True),
        conversion.Leg(10, divide=False),
    )
    # JPY -> EUR: directly through EURJPY, though JPY -> USD -> EUR exists too
    assert conversion.path(pairs, JPY, EUR) == (conversion.Leg(13, divide=True),)
    # a duplicate pair (a second USDJPY, id 9): the lower id wins, every time
    assert conversion.path({**pairs, 9: (USD, JPY)}, JPY, USD) == (conversion.Leg(9, True),)
    assert conversion.path(pairs, SGD, USD) is None
    assert conversion.path(pairs, 0, USD) is None
    # three legs at most: a chain of four is not followed
    chain = {1: (1, 2), 2: (2, 3), 3: (3, 4), 4: (4, 5)}
    assert conversion.path(chain, 1, 4) is not None and conversion.path(chain, 1, 5) is None


def test_conversion_rate_needs_a_two_sided_quote_on_every_leg() -> None:
    legs = (conversion.Leg(1, divide=True), conversion.Leg(2, divide=False))
    assert conversion.rate(legs, {1: Quote(2.0, 2.0)}) is None
    assert conversion.rate(legs, {1: Quote(2.0, 2.0), 2: Quote(3.0, 0.0)}) is None
    assert conversion.rate(legs, {1: Quote(2.0, 2.0), 2: Quote(3.0, 3.0)}) == Decimal("1.5")
    assert conversion.rate((), {}) == Decimal(1)


async def test_a_spot_with_one_side_keeps_the_other() -> None:
    catalogue, _ = await loaded()
    catalogue.on_spot(spot(11, 150.000, 150.010))
    catalogue.on_spot(spot(11, None, 150.020))
    assert (catalogue.quotes[11].bid, catalogue.quotes[11].ask) == (150.0, 150.02)

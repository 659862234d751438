"""An account's instruments: assets, symbol specs, and quotes for currency conversion.

Loaded once before the account is ready (the copy path never asks the server about a
symbol) and refreshed when the server says a symbol changed. Conversion quotes are kept
only for accounts that size by risk: the pairs that turn each quote currency into the
deposit currency, found by asset ids (``cmamd.accounts.conversion``), are subscribed to,
and resubscribed after every reconnect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from google.protobuf.message import Message

from cmamd.accounts import conversion, convert
from cmamd.accounts.model import Quote, SymbolSpec
from cmamd.connection.ratelimit import Priority
from cmamd.protocol import units
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.replies import expect_reply

SYMBOL_DETAIL_BATCH = 200

Request = Callable[..., Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class BrokerLists:
    """The broker's asset list and light symbol list: the same for all its accounts."""

    assets: pb.ProtoOAAssetListRes
    symbols: pb.ProtoOASymbolsListRes


async def fetch_broker_lists(request: Request, account_id: int) -> BrokerLists:
    assets = await request(
        pb.ProtoOAAssetListReq(ctidTraderAccountId=account_id), priority=Priority.QUERY
    )
    symbols = await request(
        pb.ProtoOASymbolsListReq(ctidTraderAccountId=account_id), priority=Priority.QUERY
    )
    return BrokerLists(
        expect_reply(assets, pb.ProtoOAAssetListRes, "ProtoOAAssetListReq"),
        expect_reply(symbols, pb.ProtoOASymbolsListRes, "ProtoOASymbolsListReq"),
    )


class Catalogue:
    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.asset_names: dict[int, str] = {}
        self.symbols_by_id: dict[int, SymbolSpec] = {}
        self.symbols_by_name: dict[str, SymbolSpec] = {}
        self.quotes: dict[int, Quote] = {}
        self._names: dict[int, str] = {}
        self._pairs: dict[int, tuple[int, int]] = {}  # symbol id -> (base, quote) asset ids
        self._paths: dict[tuple[int, int], tuple[conversion.Leg, ...] | None] = {}

    @property
    def loaded(self) -> bool:
        return bool(self.symbols_by_id)

    async def load(self, request: Request, lists: BrokerLists | None = None) -> None:
        """Assets, the symbol list (``lists`` when shared) and every symbol's details."""
        if lists is None:
            lists = await fetch_broker_lists(request, self.account_id)
        self.asset_names = {a.assetId: a.name for a in lists.assets.asset}
        light = lists.symbols
        self._names = {s.symbolId: s.symbolName for s in light.symbol}
        self._pairs = conversion.asset_pairs(light.symbol)
        self._paths = {}
        specs = await self._details(request, sorted(self._names))
        self.symbols_by_id = specs
        self.symbols_by_name = {spec.name: spec for spec in specs.values()}

    async def reload(self, request: Request, symbol_ids: Iterable[int]) -> list[str]:
        """Fetch the details of changed symbols again; returns their names."""
        known = sorted(i for i in set(symbol_ids) if i in self._names)
        if not known:
            return []
        specs = await self._details(request, known)
        for symbol_id, spec in specs.items():
            old = self.symbols_by_id.get(symbol_id)
            if old is not None:
                self.symbols_by_name.pop(old.name, None)
            self.symbols_by_id[symbol_id] = spec
            self.symbols_by_name[spec.name] = spec
        return [spec.name for spec in specs.values()]

    async def _details(self, request: Request, ids: list[int]) -> dict[int, SymbolSpec]:
        specs: dict[int, SymbolSpec] = {}
        for start in range(0, len(ids), SYMBOL_DETAIL_BATCH):
            details = expect_reply(
                await request(
                    pb.ProtoOASymbolByIdReq(
                        ctidTraderAccountId=self.account_id,
                        symbolId=ids[start : start + SYMBOL_DETAIL_BATCH],
                    ),
                    priority=Priority.QUERY,
                ),
                pb.ProtoOASymbolByIdRes,
                "ProtoOASymbolByIdReq",
            )
            for symbol in details.symbol:
                specs[symbol.symbolId] = convert.symbol_spec(symbol, self._names[symbol.symbolId])
        return specs

    # conversion ----------------------------------------------------------------------
    def conversion_symbols(self, deposit_asset_id: int) -> list[int]:
        """Ids of the symbols that convert every quote currency here into the deposit asset."""
        needed: set[int] = set()
        for quote_asset in {quote for _, quote in self._pairs.values()}:
            legs = self._path(quote_asset, deposit_asset_id)
            needed.update(leg.symbol_id for leg in legs or ())
        return sorted(needed)

    async def subscribe_conversion_quotes(self, request: Request, deposit_asset_id: int) -> int:
        ids = self.conversion_symbols(deposit_asset_id)
        if ids:
            await request(
                pb.ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account_id, symbolId=ids),
                priority=Priority.BACKGROUND,
            )
        return len(ids)

    def on_spot(self, spot: pb.ProtoOASpotEvent) -> None:
        # a spot event may carry only the side that moved
        old = self.quotes.get(spot.symbolId) or Quote(0.0, 0.0)
        bid = units.price_from_points(spot.bid) if spot.HasField("bid") else old.bid
        ask = units.price_from_points(spot.ask) if spot.HasField("ask") else old.ask
        self.quotes[spot.symbolId] = Quote(bid, ask)

    def quote_to_deposit(self, spec: SymbolSpec, deposit_asset_id: int) -> Decimal | None:
        """Rate from the symbol's quote currency to the deposit currency, if known."""
        assets = self._pairs.get(spec.symbol_id)
        if assets is None:
            return None
        legs = self._path(assets[1], deposit_asset_id)
        return None if legs is None else conversion.rate(legs, self.quotes)

    def _path(self, from_asset: int, to_asset: int) -> tuple[conversion.Leg, ...] | None:
        key = (from_asset, to_asset)
        if key not in self._paths:
            self._paths[key] = conversion.path(self._pairs, from_asset, to_asset)
        return self._paths[key]

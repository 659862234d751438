"""An account's instruments: assets, symbol specs, and quotes for currency conversion.

Loaded once before the account is ready (the copy path never asks the server about a
symbol) and refreshed when the server says a symbol changed. Conversion quotes are kept
only for accounts that size by risk: the pairs that turn each quote currency into the
deposit currency are subscribed to, and resubscribed after every reconnect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal

from google.protobuf.message import Message

from cmamd.accounts import convert
from cmamd.accounts.model import Quote, SymbolSpec
from cmamd.connection.ratelimit import Priority
from cmamd.protocol import units
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.replies import expect_reply

SYMBOL_DETAIL_BATCH = 200

Request = Callable[..., Awaitable[Message]]


class Catalogue:
    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.asset_names: dict[int, str] = {}
        self.symbols_by_id: dict[int, SymbolSpec] = {}
        self.symbols_by_name: dict[str, SymbolSpec] = {}
        self.quotes: dict[int, Quote] = {}
        self._names: dict[int, str] = {}
        self._quote_assets: dict[int, int] = {}

    @property
    def loaded(self) -> bool:
        return bool(self.symbols_by_id)

    async def load(self, request: Request) -> None:
        """Assets, the symbol list and every symbol's details (in batches)."""
        assets = expect_reply(
            await request(
                pb.ProtoOAAssetListReq(ctidTraderAccountId=self.account_id),
                priority=Priority.QUERY,
            ),
            pb.ProtoOAAssetListRes,
            "ProtoOAAssetListReq",
        )
        self.asset_names = {a.assetId: a.name for a in assets.asset}
        light = expect_reply(
            await request(
                pb.ProtoOASymbolsListReq(ctidTraderAccountId=self.account_id),
                priority=Priority.QUERY,
            ),
            pb.ProtoOASymbolsListRes,
            "ProtoOASymbolsListReq",
        )
        self._names = {s.symbolId: s.symbolName for s in light.symbol}
        self._quote_assets = {s.symbolId: s.quoteAssetId for s in light.symbol}
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
    def conversion_symbols(self, deposit_asset: str) -> list[int]:
        """Ids of the pairs that convert every quote currency here into ``deposit_asset``."""
        needed: set[int] = set()
        for quote_asset in set(self._quote_assets.values()):
            name = self.asset_names.get(quote_asset, "")
            if not name or name == deposit_asset:
                continue
            for pair in (name + deposit_asset, deposit_asset + name):
                spec = self.symbols_by_name.get(pair)
                if spec is not None:
                    needed.add(spec.symbol_id)
                    break
        return sorted(needed)

    async def subscribe_conversion_quotes(self, request: Request, deposit_asset: str) -> int:
        ids = self.conversion_symbols(deposit_asset)
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

    def quote_to_deposit(self, spec: SymbolSpec, deposit_asset: str) -> Decimal | None:
        """Rate from the symbol's quote currency to the deposit currency, if known."""
        quote_asset = self._quote_assets.get(spec.symbol_id)
        if quote_asset is None:
            return None
        quote_name = self.asset_names.get(quote_asset, "")
        if quote_name and quote_name == deposit_asset:
            return Decimal(1)
        pairs = ((quote_name + deposit_asset, False), (deposit_asset + quote_name, True))
        for pair, invert in pairs:
            other = self.symbols_by_name.get(pair)
            quote = self.quotes.get(other.symbol_id) if other else None
            if quote and quote.bid > 0:
                mid = Decimal(repr((quote.bid + quote.ask) / 2))
                return 1 / mid if invert else mid
        return None

"""Currency conversion through a broker's own symbols, found by asset ids.

Brokers name symbols as they like (``USDJPY``, ``USDJPY.m``, ``FX:USD/JPY``), so a pair is
never found by its name: every light symbol says which asset it prices (base) in which
(quote), and a conversion is a chain of such symbols from one asset to another. The same
chain serves the choice of spot subscriptions and the rate computed from their quotes, so
a rate is never asked of a symbol whose quotes were not subscribed to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from cmamd.accounts.model import Quote
from cmamd.protocol.proto import model_pb2

MAX_LEGS = 3
"""Longest chain tried: direct, one cross (JPY -> USD -> EUR), or two for exotic deposits."""

AssetPairs = Mapping[int, tuple[int, int]]
"""symbol id -> (base asset id, quote asset id)."""


@dataclass(frozen=True, slots=True)
class Leg:
    """One step of a conversion: through ``symbol_id``, multiplying by its mid price, or
    dividing by it when the symbol quotes the step the other way round (``divide``)."""

    symbol_id: int
    divide: bool


def asset_pairs(symbols: Iterable[model_pb2.ProtoOALightSymbol]) -> dict[int, tuple[int, int]]:
    """The (base, quote) asset ids of every symbol; one without both converts nothing."""
    return {
        s.symbolId: (s.baseAssetId, s.quoteAssetId)
        for s in symbols
        if s.baseAssetId and s.quoteAssetId and s.baseAssetId != s.quoteAssetId
    }


def path(pairs: AssetPairs, from_asset: int, to_asset: int) -> tuple[Leg, ...] | None:
    """The shortest chain of symbols turning an amount of ``from_asset`` into ``to_asset``.

    () when they are the same asset; None when no chain of at most MAX_LEGS symbols exists
    or an asset is unknown (0). Among chains of one length the one through the lowest
    symbol ids wins, so the answer is the same every time it is asked.
    """
    if not from_asset or not to_asset:
        return None
    if from_asset == to_asset:
        return ()
    edges: dict[int, list[tuple[int, Leg]]] = {}
    for symbol_id in sorted(pairs):
        base, quote = pairs[symbol_id]
        edges.setdefault(base, []).append((quote, Leg(symbol_id, divide=False)))
        edges.setdefault(quote, []).append((base, Leg(symbol_id, divide=True)))
    reached: dict[int, tuple[Leg, ...]] = {from_asset: ()}
    frontier = [from_asset]
    for _ in range(MAX_LEGS):
        following: list[int] = []
        for asset in frontier:
            for other, leg in edges.get(asset, []):
                if other in reached:
                    continue
                reached[other] = (*reached[asset], leg)
                if other == to_asset:
                    return reached[other]
                following.append(other)
        frontier = following
    return None


def rate(legs: tuple[Leg, ...], quotes: Mapping[int, Quote]) -> Decimal | None:
    """What one unit of the chain's first asset is worth in its last, at mid prices;
    None while a symbol of the chain has no two-sided quote yet."""
    result = Decimal(1)
    for leg in legs:
        quote = quotes.get(leg.symbol_id)
        if quote is None or quote.bid <= 0 or quote.ask <= 0:
            return None
        # the decimals the prices were written as, not the binary floats' expansions
        mid = (Decimal(repr(quote.bid)) + Decimal(repr(quote.ask))) / 2
        result = result / mid if leg.divide else result * mid
    return result

"""Quotes of every broker's symbols: set by tests, or moved by a seeded random walk.

A quote is a pair of real prices rounded to the symbol's digits. Changes are reported per
side, because a real spot event may carry only the bid or only the ask.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from cmamd.protocol.units import round_price
from cmamd.sim.config import BrokerConfig, SymbolConfig, TradingMode


@dataclass(frozen=True, slots=True)
class Quote:
    bid: float
    ask: float


@dataclass(frozen=True, slots=True)
class PriceChange:
    broker: str
    symbol_id: int
    bid_changed: bool
    ask_changed: bool


class Market:
    def __init__(self, brokers: Sequence[BrokerConfig], seed: int) -> None:
        self._by_id: dict[str, dict[int, SymbolConfig]] = {}
        self._by_name: dict[str, dict[str, SymbolConfig]] = {}
        self._quotes: dict[tuple[str, int], Quote] = {}
        for broker in brokers:
            self._by_id[broker.name] = {s.symbol_id: s for s in broker.symbols}
            self._by_name[broker.name] = {s.name: s for s in broker.symbols}
            for symbol in broker.symbols:
                self._quotes[broker.name, symbol.symbol_id] = Quote(symbol.bid, symbol.ask)
        self._rng = random.Random(seed)

    @property
    def brokers(self) -> list[str]:
        return list(self._by_id)

    def symbols(self, broker: str) -> list[SymbolConfig]:
        return list(self._by_id[broker].values())

    def symbol(self, broker: str, symbol_id: int) -> SymbolConfig | None:
        return self._by_id[broker].get(symbol_id)

    def symbol_by_name(self, broker: str, name: str) -> SymbolConfig | None:
        return self._by_name[broker].get(name)

    def quote(self, broker: str, symbol_id: int) -> Quote:
        return self._quotes[broker, symbol_id]

    def set_price(
        self, name: str, bid: float, ask: float, broker: str | None = None
    ) -> list[PriceChange]:
        """Set the quote of ``name`` on ``broker`` (None: on every broker listing that name).

        Prices finer than the symbol's digits are refused, as the real feed never has them.
        """
        brokers = [broker] if broker is not None else self.brokers
        targets = [(b, s) for b in brokers if (s := self._by_name.get(b, {}).get(name)) is not None]
        if not targets:
            where = broker if broker is not None else "any broker"
            raise KeyError(f"no symbol {name!r} on {where}")
        if not 0 < bid <= ask:
            raise ValueError(f"need 0 < bid <= ask, got bid={bid} ask={ask}")
        changes = []
        for broker_name, symbol in targets:
            for price in (bid, ask):
                if round_price(price, symbol.digits) != price:
                    raise ValueError(f"{price} has more than {symbol.digits} digits for {name}")
            change = self._store(broker_name, symbol, Quote(bid, ask))
            if change is not None:
                changes.append(change)
        return changes

    def set_trading_mode(
        self, name: str, mode: TradingMode, broker: str | None = None
    ) -> list[tuple[str, int]]:
        """Change a symbol's trading mode; returns the (broker, symbol id) pairs changed."""
        changed = []
        for broker_name in [broker] if broker is not None else self.brokers:
            symbol = self._by_name.get(broker_name, {}).get(name)
            if symbol is None:
                continue
            updated = symbol.model_copy(update={"trading_mode": mode})
            self._by_name[broker_name][name] = updated
            self._by_id[broker_name][symbol.symbol_id] = updated
            changed.append((broker_name, symbol.symbol_id))
        if not changed:
            raise KeyError(f"no symbol {name!r} on {broker or 'any broker'}")
        return changed

    def walk(self) -> list[PriceChange]:
        """One step of the random walk for every symbol: the mid moves, the spread stays."""
        changes = []
        for broker_name, symbols in self._by_id.items():
            for symbol in symbols.values():
                old = self._quotes[broker_name, symbol.symbol_id]
                spread = old.ask - old.bid
                tick = 10.0**-symbol.digits
                mid = (old.bid + old.ask) / 2 * math.exp(self._rng.gauss(0.0, symbol.volatility))
                bid = max(round_price(mid - spread / 2, symbol.digits), tick)
                ask = round_price(bid + spread, symbol.digits)
                change = self._store(broker_name, symbol, Quote(bid, ask))
                if change is not None:
                    changes.append(change)
        return changes

    def conversion_rate(self, broker: str, from_asset: str, to_asset: str) -> Decimal:
        """Mid-price rate turning an amount of ``from_asset`` into ``to_asset``.

        Looks for a direct or inverse symbol, then for a cross through one other asset.
        """
        if from_asset == to_asset:
            return Decimal(1)
        direct = self._direct_rate(broker, from_asset, to_asset)
        if direct is not None:
            return direct
        assets = {a for s in self._by_id[broker].values() for a in (s.base_asset, s.quote_asset)}
        for middle in sorted(assets - {from_asset, to_asset}):
            first = self._direct_rate(broker, from_asset, middle)
            second = self._direct_rate(broker, middle, to_asset)
            if first is not None and second is not None:
                return first * second
        raise LookupError(f"{broker}: no symbol converts {from_asset} to {to_asset}")

    def _direct_rate(self, broker: str, from_asset: str, to_asset: str) -> Decimal | None:
        for symbol in self._by_id[broker].values():
            quote = self._quotes[broker, symbol.symbol_id]
            mid = (Decimal(repr(quote.bid)) + Decimal(repr(quote.ask))) / 2
            if (symbol.base_asset, symbol.quote_asset) == (from_asset, to_asset):
                return mid
            if (symbol.base_asset, symbol.quote_asset) == (to_asset, from_asset):
                return 1 / mid
        return None

    def _store(self, broker: str, symbol: SymbolConfig, quote: Quote) -> PriceChange | None:
        old = self._quotes[broker, symbol.symbol_id]
        self._quotes[broker, symbol.symbol_id] = quote
        if old == quote:
            return None
        return PriceChange(broker, symbol.symbol_id, old.bid != quote.bid, old.ask != quote.ask)

"""Open API units: integer prices in 1/100000, volumes in cents of a unit, money scaled.

Spot prices and relative SL/TP distances are integers in 1/100000 of the quote currency
whatever the symbol's digits; order and position prices are doubles in real units.
Volumes are integers in 0.01 of a unit (FX lot of 100,000 units = 10,000,000).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

PRICE_SCALE = 100_000


def price_from_points(points: int) -> float:
    """A spot/relative integer in 1/100000 as a real price."""
    return points / PRICE_SCALE


def price_to_points(price: float) -> int:
    return round(price * PRICE_SCALE)


def round_price(price: float, digits: int) -> float:
    """Round a real price to the symbol's digits (the server rejects finer prices)."""
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(price)).quantize(quantum, rounding=ROUND_HALF_EVEN))


def volume_to_lots(volume: int, lot_size: int) -> Decimal:
    """Lots for a volume; both in cents of a unit, so the ratio is exact in Decimal."""
    return Decimal(volume) / Decimal(lot_size)


def lots_to_volume(lots: Decimal | int | str, lot_size: int) -> Decimal:
    """Volume (cents) for a number of lots, unrounded: callers round to the volume step."""
    return Decimal(lots) * Decimal(lot_size)


def format_lots(volume: int, lot_size: int) -> str:
    """Lots as traders write them: two decimals ("1.00", "0.25"), more only when needed."""
    lots = volume_to_lots(volume, lot_size)
    if lots == lots.quantize(Decimal("0.01")):
        return f"{lots:.2f}"
    return f"{lots.normalize():f}"


def money(value: int, money_digits: int | None) -> Decimal:
    """A money integer (balance, P&L, commission) in account currency; absent digits = 2."""
    return Decimal(value).scaleb(-(2 if money_digits is None else money_digits))

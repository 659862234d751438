"""Checks a trading request must pass, each raising ``Rejected`` with the real error code.

When the real server's choice is unknown the check is the stricter one: prices finer than
the symbol's digits, stops on the wrong side and volumes off the step are all refused.
"""

from __future__ import annotations

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.protocol.units import round_price
from cmamd.sim.config import AccessRights, SymbolConfig
from cmamd.sim.market import Quote

MAX_LABEL = 100
MAX_CLIENT_ORDER_ID = 50
MAX_COMMENT = 512


class Rejected(Exception):
    """A trading request refused by the engine; sent as ``ProtoOAOrderErrorEvent``."""

    def __init__(
        self,
        code: str,
        description: str,
        *,
        order_id: int | None = None,
        position_id: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.order_id = order_id
        self.position_id = position_id

    def to_proto(self, account_id: int) -> messages_pb2.ProtoOAOrderErrorEvent:
        event = messages_pb2.ProtoOAOrderErrorEvent(
            errorCode=self.code, ctidTraderAccountId=account_id, description=self.description
        )
        if self.order_id is not None:
            event.orderId = self.order_id
        if self.position_id is not None:
            event.positionId = self.position_id
        return event


def check_texts(label: str, client_order_id: str, comment: str) -> None:
    for name, value, limit in (
        ("label", label, MAX_LABEL),
        ("clientOrderId", client_order_id, MAX_CLIENT_ORDER_ID),
        ("comment", comment, MAX_COMMENT),
    ):
        if len(value) > limit:
            raise Rejected("INVALID_REQUEST", f"{name} longer than {limit} characters")


def check_volume(symbol: SymbolConfig, volume: int) -> None:
    if volume < symbol.min_volume:
        raise Rejected("TRADING_BAD_VOLUME", f"volume {volume} below minimum {symbol.min_volume}")
    if volume > symbol.max_volume:
        raise Rejected("TRADING_BAD_VOLUME", f"volume {volume} above maximum {symbol.max_volume}")
    if volume % symbol.step_volume:
        raise Rejected(
            "TRADING_BAD_VOLUME", f"volume {volume} is not a multiple of {symbol.step_volume}"
        )


def check_close_volume(symbol: SymbolConfig, volume: int, position_volume: int) -> None:
    if volume <= 0 or volume > position_volume:
        raise Rejected("TRADING_BAD_VOLUME", f"close volume {volume} not in 1..{position_volume}")
    if volume % symbol.step_volume:
        raise Rejected(
            "TRADING_BAD_VOLUME", f"volume {volume} is not a multiple of {symbol.step_volume}"
        )


def check_digits(symbol: SymbolConfig, price: float, code: str, what: str) -> None:
    if price <= 0 or round_price(price, symbol.digits) != price:
        raise Rejected(code, f"{what} {price} is not a positive price with {symbol.digits} digits")


def check_entry_side(
    order_type: model_pb2.ProtoOAOrderType, side: int, price: float, quote: Quote
) -> None:
    """Limits wait for a better price, stops for a worse one; the market must not be there yet."""
    reference = quote.ask if side == model_pb2.BUY else quote.bid
    below = price < reference
    above = price > reference
    buy = side == model_pb2.BUY
    ok = (below if buy else above) if order_type == model_pb2.LIMIT else (above if buy else below)
    if not ok:
        kind = "limit" if order_type == model_pb2.LIMIT else "stop"
        raise Rejected(
            "TRADING_BAD_PRICES",
            f"{kind} price {price} is on the wrong side of the market ({reference})",
        )


def check_protection(
    symbol: SymbolConfig,
    side: int,
    reference: float,
    stop_loss: float | None,
    take_profit: float | None,
) -> None:
    """A buy's stop loss lies below ``reference`` and its take profit above; a sell's inversely."""
    sign = 1 if side == model_pb2.BUY else -1
    if stop_loss is not None:
        check_digits(symbol, stop_loss, "TRADING_BAD_STOPS", "stopLoss")
        if sign * (reference - stop_loss) <= 0:
            raise Rejected(
                "TRADING_BAD_STOPS", f"stopLoss {stop_loss} on the wrong side of {reference}"
            )
    if take_profit is not None:
        check_digits(symbol, take_profit, "TRADING_BAD_STOPS", "takeProfit")
        if sign * (take_profit - reference) <= 0:
            raise Rejected(
                "TRADING_BAD_STOPS", f"takeProfit {take_profit} on the wrong side of {reference}"
            )


def check_relative(
    symbol: SymbolConfig, relative_stop_loss: int | None, relative_take_profit: int | None
) -> None:
    """Relative stops are in 1/100000 and must land on the symbol's price grid."""
    grid = 10 ** (5 - symbol.digits)
    for name, value in (
        ("relativeStopLoss", relative_stop_loss),
        ("relativeTakeProfit", relative_take_profit),
    ):
        if value is None:
            continue
        if value <= 0:
            raise Rejected("TRADING_BAD_STOPS", f"{name} must be positive, got {value}")
        if value % grid:
            raise Rejected(
                "TRADING_BAD_STOPS", f"{name} {value} is finer than {symbol.digits} digits"
            )


def check_expiration(time_in_force: int, expiration_ms: int | None, now_ms: int) -> None:
    if time_in_force != model_pb2.GOOD_TILL_DATE:
        return
    if expiration_ms is None:
        raise Rejected("TRADING_BAD_EXPIRATION_DATE", "GOOD_TILL_DATE needs expirationTimestamp")
    if expiration_ms <= now_ms:
        raise Rejected("TRADING_BAD_EXPIRATION_DATE", f"expiration {expiration_ms} is in the past")


def check_may_trade(symbol: SymbolConfig, rights: AccessRights, opening: bool) -> None:
    """Account rights and symbol trading mode; ``opening``: the request adds exposure."""
    if rights == "no_trading" or (rights == "close_only" and opening):
        raise Rejected("TRADING_NOT_ALLOWED", f"account access rights are {rights}")
    if symbol.trading_mode in ("disabled", "disabled_with_pendings"):
        raise Rejected("TRADING_DISABLED", f"trading on {symbol.name} is disabled")
    if symbol.trading_mode == "close_only" and opening:
        raise Rejected("TRADING_DISABLED", f"{symbol.name} is in close-only mode")


def check_short_selling(symbol: SymbolConfig, side: int, opening: bool) -> None:
    if side == model_pb2.SELL and opening and not symbol.short_selling:
        raise Rejected("SHORT_SELLING_NOT_ALLOWED", f"short selling {symbol.name} is disabled")


class RequestError(Exception):
    """A non-trading request refused; sent as ``ProtoOAErrorRes`` with the account id."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description

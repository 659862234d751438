"""Filling an order against an account: position bookkeeping, realised P&L, margin.

Hedged accounts open one position per order unless the order names a position (a close).
Netted accounts hold one position per symbol: a same-side fill grows it (volume-weighted
entry), an opposite fill reduces, closes or reverses it. Money is computed in ``Decimal``
and stored as integers scaled by the account's ``money_digits``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from google.protobuf.message import Message

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.protocol.units import PRICE_SCALE, round_price
from cmamd.sim.config import SymbolConfig
from cmamd.sim.market import Market
from cmamd.sim.protos import execution_event, trader_proto
from cmamd.sim.records import CloseDetail, SimAccount, SimDeal, SimOrder, SimPosition


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))


class Ids:
    """Id sequences; each kind starts in its own range so that mixing them up is visible."""

    def __init__(self) -> None:
        self.position = itertools.count(10_000_001)
        self.order = itertools.count(20_000_001)
        self.deal = itertools.count(30_000_001)
        self.balance_history = itertools.count(40_000_001)


class FillEngine:
    def __init__(
        self, market: Market, ids: Ids, now_ms: Callable[[], int], asset_ids: dict[str, int]
    ) -> None:
        self._market = market
        self._ids = ids
        self._now_ms = now_ms
        self._asset_ids = asset_ids

    # --- prices and money -------------------------------------------------------------

    def market_price(self, account: SimAccount, symbol_id: int, side: int) -> float:
        """Where an order of ``side`` fills now: buys at the ask, sells at the bid."""
        quote = self._market.quote(account.config.broker, symbol_id)
        return quote.ask if side == model_pb2.BUY else quote.bid

    def closing_price(self, account: SimAccount, position: SimPosition) -> float:
        """Where ``position`` would close now (the opposite side of the book)."""
        closing_side = model_pb2.SELL if position.side == model_pb2.BUY else model_pb2.BUY
        return self.market_price(account, position.symbol_id, closing_side)

    def quote_to_deposit(self, account: SimAccount, symbol: SymbolConfig) -> Decimal:
        return self._market.conversion_rate(
            account.config.broker, symbol.quote_asset, account.config.deposit_asset
        )

    def pnl(
        self,
        account: SimAccount,
        symbol: SymbolConfig,
        side: int,
        entry: float,
        exit_price: float,
        volume: int,
    ) -> int:
        """Gross P&L of ``volume`` (cents of a unit) held on ``side`` from entry to exit."""
        move = _dec(exit_price) - _dec(entry)
        if side == model_pb2.SELL:
            move = -move
        amount = move * volume / 100 * self.quote_to_deposit(account, symbol)
        return self._to_money(account, amount, ROUND_HALF_EVEN)

    def margin(self, account: SimAccount, symbol: SymbolConfig, volume: int, price: float) -> int:
        """Margin for ``volume`` at ``price``: notional in deposit currency over leverage."""
        notional = _dec(price) * volume / 100 * self.quote_to_deposit(account, symbol)
        leverage = Decimal(account.config.leverage_in_cents) / 100
        return self._to_money(account, notional / leverage, ROUND_CEILING)

    def unrealized(self, account: SimAccount, position: SimPosition) -> int:
        symbol = self._symbol(account, position.symbol_id)
        exit_price = self.closing_price(account, position)
        return self.pnl(account, symbol, position.side, position.price, exit_price, position.volume)

    def free_margin(self, account: SimAccount) -> int:
        used = sum(
            self.margin(account, self._symbol(account, p.symbol_id), p.volume, p.price)
            for p in account.positions.values()
        )
        floating = sum(self.unrealized(account, p) for p in account.positions.values())
        return account.balance + floating - used

    def trader_updated(self, account: SimAccount) -> messages_pb2.ProtoOATraderUpdatedEvent:
        return messages_pb2.ProtoOATraderUpdatedEvent(
            ctidTraderAccountId=account.account_id,
            trader=trader_proto(account, self._asset_ids[account.config.deposit_asset]),
        )

    # --- filling ----------------------------------------------------------------------

    def fill(
        self,
        account: SimAccount,
        symbol: SymbolConfig,
        order: SimOrder,
        price: float,
        *,
        server_event: bool = False,
    ) -> list[Message]:
        """Execute ``order`` completely at ``price``: ORDER_FILLED (+ TraderUpdated on P&L)."""
        now = self._now_ms()
        target = self._target(account, order)
        deal = SimDeal(
            deal_id=next(self._ids.deal),
            order_id=order.order_id,
            position_id=0,
            account_id=account.account_id,
            symbol_id=order.symbol_id,
            side=order.side,
            volume=order.volume,
            filled_volume=order.volume,
            price=price,
            created_ms=order.created_ms,
            executed_ms=now,
        )
        if target is None or target.status == model_pb2.POSITION_STATUS_CREATED:
            position = self._open(account, order, target, price, symbol, now)
        elif target.side == order.side:
            position = target
            total = target.volume + order.volume
            vwap = (_dec(target.price) * target.volume + _dec(price) * order.volume) / total
            target.price = float(round(vwap, 10))
            target.volume = total
            self._protect(target, order, price, symbol)
        else:
            position = target
            deal.close_detail = self._reduce(account, symbol, target, order, price, now)
        if order.position_id is not None and order.position_id != position.position_id:
            account.placeholders.pop(order.position_id, None)
        position.updated_ms = now
        order.status = model_pb2.ORDER_STATUS_FILLED
        order.executed_volume = order.volume
        order.execution_price = price
        order.position_id = position.position_id
        order.updated_ms = now
        deal.position_id = position.position_id
        account.deals.append(deal)
        events: list[Message] = [
            execution_event(
                account.account_id,
                model_pb2.ORDER_FILLED,
                order=order,
                position=position,
                deal=deal,
                money_digits=account.config.money_digits,
                server_event=server_event,
            )
        ]
        if deal.close_detail is not None:
            events.append(self.trader_updated(account))
        return events

    def _target(self, account: SimAccount, order: SimOrder) -> SimPosition | None:
        if order.position_id is not None:
            position = account.positions.get(order.position_id)
            if position is not None:
                return position
            placeholder = account.placeholders.get(order.position_id)
            if account.netted:
                # Another fill may have opened the symbol's position since the order was placed.
                return account.netted_position(order.symbol_id) or placeholder
            return placeholder
        return account.netted_position(order.symbol_id) if account.netted else None

    def _open(
        self,
        account: SimAccount,
        order: SimOrder,
        placeholder: SimPosition | None,
        price: float,
        symbol: SymbolConfig,
        now: int,
    ) -> SimPosition:
        position = placeholder or SimPosition(
            position_id=next(self._ids.position),
            account_id=account.account_id,
            symbol_id=order.symbol_id,
            side=order.side,
            volume=0,
            status=model_pb2.POSITION_STATUS_CREATED,
        )
        account.placeholders.pop(position.position_id, None)
        position.status = model_pb2.POSITION_STATUS_OPEN
        position.side = order.side
        position.volume = order.volume
        position.price = price
        position.open_ms = now
        position.label = order.label
        position.comment = order.comment
        self._protect(position, order, price, symbol)
        account.positions[position.position_id] = position
        return position

    def _reduce(
        self,
        account: SimAccount,
        symbol: SymbolConfig,
        position: SimPosition,
        order: SimOrder,
        price: float,
        now: int,
    ) -> CloseDetail:
        closed = min(order.volume, position.volume)
        entry = position.price
        gross = self.pnl(account, symbol, position.side, entry, price, closed)
        account.balance += gross
        account.balance_version += 1
        rest = position.volume - closed
        excess = order.volume - closed
        if rest > 0:
            position.volume = rest
        elif excess > 0:  # netted reversal: the remainder opens the other way at this price
            position.side = order.side
            position.volume = excess
            position.price = price
            position.open_ms = now
            position.stop_loss = position.take_profit = None
            self._protect(position, order, price, symbol)
        else:
            position.status = model_pb2.POSITION_STATUS_CLOSED
            position.volume = 0
            position.close_ms = now
            del account.positions[position.position_id]
        return CloseDetail(
            entry_price=entry,
            gross_profit=gross,
            balance=account.balance,
            balance_version=account.balance_version,
            closed_volume=closed,
            quote_to_deposit=float(self.quote_to_deposit(account, symbol)),
        )

    @staticmethod
    def _protect(
        position: SimPosition, order: SimOrder, price: float, symbol: SymbolConfig
    ) -> None:
        """Stops the order asks for, absolute or relative to the fill price; others are kept."""
        sign = 1 if position.side == model_pb2.BUY else -1
        if order.stop_loss is not None:
            position.stop_loss = order.stop_loss
        elif order.relative_stop_loss is not None:
            distance = order.relative_stop_loss / PRICE_SCALE
            position.stop_loss = round_price(price - sign * distance, symbol.digits)
        if order.take_profit is not None:
            position.take_profit = order.take_profit
        elif order.relative_take_profit is not None:
            distance = order.relative_take_profit / PRICE_SCALE
            position.take_profit = round_price(price + sign * distance, symbol.digits)

    def _symbol(self, account: SimAccount, symbol_id: int) -> SymbolConfig:
        symbol = self._market.symbol(account.config.broker, symbol_id)
        if symbol is None:
            raise KeyError(f"symbol {symbol_id} not on {account.config.broker}")
        return symbol

    @staticmethod
    def _to_money(account: SimAccount, amount: Decimal, rounding: str) -> int:
        return int(amount.scaleb(account.config.money_digits).quantize(Decimal(1), rounding))

"""Engine base: accounts, ids and clock, shared helpers, and what the market or clock triggers.

Anything the market or the clock triggers (pending fills, stop loss / take profit, expiry)
is flagged isServerEvent: no request of the client caused it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.sim.config import SimConfig, SymbolConfig
from cmamd.sim.fills import FillEngine, Ids
from cmamd.sim.market import Market
from cmamd.sim.protos import execution_event
from cmamd.sim.records import SimAccount, SimOrder, SimPosition, opposite
from cmamd.sim.validation import Rejected
from cmamd.sim.views import BrokerViews


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """A message an account's connections must receive."""

    account_id: int
    message: Message


class EngineBase(BrokerViews):
    def __init__(
        self, config: SimConfig, market: Market, clock: Callable[[], float] = time.time
    ) -> None:
        accounts = {
            a.account_id: SimAccount(
                config=a, balance=int(a.balance.scaleb(a.money_digits).to_integral_value())
            )
            for a in config.accounts()
        }
        asset_ids = {a.name: a.asset_id for a in config.assets}
        ids = Ids()
        fills = FillEngine(market, ids, self.now_ms, asset_ids)
        super().__init__(accounts, market, fills, asset_ids)
        self._clock = clock
        self._ids = ids

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- market and clock -------------------------------------------------------------

    def on_price_change(self, broker: str, symbol_id: int) -> list[AccountEvent]:
        """Fill pending orders and trigger stops that the new quote of ``symbol_id`` crosses."""
        symbol = self._market.symbol(broker, symbol_id)
        if symbol is None:
            raise KeyError(f"broker {broker!r} has no symbol {symbol_id}")
        quote = self._market.quote(broker, symbol_id)
        events: list[AccountEvent] = []
        for account in self._accounts_on(broker):
            messages: list[Message] = []
            if symbol.trading_mode != "disabled":  # the other modes still execute pendings
                pending = [o for o in account.orders.values() if o.symbol_id == symbol_id]
                for order in sorted(pending, key=lambda o: o.order_id):
                    price = _crossed(order, quote.bid, quote.ask)
                    if price is not None:
                        del account.orders[order.order_id]
                        messages += self._fills.fill(
                            account, symbol, order, price, server_event=True
                        )
            for position in sorted(account.positions.values(), key=lambda p: p.position_id):
                if position.symbol_id == symbol_id:
                    messages += self._check_stops(account, symbol, position)
            events += self._tag(account, messages)
        return events

    def expire_orders(self) -> list[AccountEvent]:
        now = self.now_ms()
        events: list[AccountEvent] = []
        for account in self._accounts.values():
            expired = [
                o
                for o in account.orders.values()
                if o.expiration_ms is not None and o.expiration_ms <= now
            ]
            for order in sorted(expired, key=lambda o: o.order_id):
                messages = self._end_order(
                    account, order, model_pb2.ORDER_EXPIRED, server_event=True
                )
                events += self._tag(account, messages)
        return events

    # --- shared helpers ---------------------------------------------------------------

    def _opening_volume(
        self,
        account: SimAccount,
        request: messages_pb2.ProtoOANewOrderReq,
        target: SimPosition | None,
    ) -> int:
        """How much of the order adds exposure rather than reducing an existing position."""
        if target is None and account.netted:
            target = account.netted_position(request.symbolId)
        if target is None or target.side == request.tradeSide:
            return request.volume
        return max(0, request.volume - target.volume)

    def _check_margin(
        self, account: SimAccount, symbol: SymbolConfig, opening: int, price: float
    ) -> None:
        if opening <= 0:
            return
        required = self._fills.margin(account, symbol, opening, price)
        free = self._fills.free_margin(account)
        if required > free:
            raise Rejected("NOT_ENOUGH_MONEY", f"margin {required} exceeds free margin {free}")

    def _check_stops(
        self, account: SimAccount, symbol: SymbolConfig, position: SimPosition
    ) -> list[Message]:
        exit_price = self._fills.closing_price(account, position)
        buy = position.side == model_pb2.BUY
        hit: float | None = None
        if position.stop_loss is not None and (
            exit_price <= position.stop_loss if buy else exit_price >= position.stop_loss
        ):
            hit = position.stop_loss
        elif position.take_profit is not None and (
            exit_price >= position.take_profit if buy else exit_price <= position.take_profit
        ):
            hit = position.take_profit
        if hit is None:
            return []
        order = self._closing_order(
            account, position, position.volume, model_pb2.STOP_LOSS_TAKE_PROFIT
        )
        order.stop_price = hit
        accepted = self._event(
            account, model_pb2.ORDER_ACCEPTED, order=order, position=position, server_event=True
        )
        return [accepted, *self._fills.fill(account, symbol, order, exit_price, server_event=True)]

    def _closing_order(
        self,
        account: SimAccount,
        position: SimPosition,
        volume: int,
        order_type: model_pb2.ProtoOAOrderType,
    ) -> SimOrder:
        now = self.now_ms()
        order = SimOrder(
            order_id=next(self._ids.order),
            account_id=account.account_id,
            symbol_id=position.symbol_id,
            side=opposite(position.side),
            order_type=order_type,
            volume=volume,
            time_in_force=model_pb2.IMMEDIATE_OR_CANCEL,
            created_ms=now,
            updated_ms=now,
            position_id=position.position_id,
            closing_order=True,
        )
        account.order_history.append(order)
        return order

    def _end_order(
        self,
        account: SimAccount,
        order: SimOrder,
        execution_type: model_pb2.ProtoOAExecutionType,
        *,
        server_event: bool = False,
    ) -> list[Message]:
        order.status = (
            model_pb2.ORDER_STATUS_EXPIRED
            if execution_type == model_pb2.ORDER_EXPIRED
            else model_pb2.ORDER_STATUS_CANCELLED
        )
        order.updated_ms = self.now_ms()
        del account.orders[order.order_id]
        if order.position_id is not None:
            account.placeholders.pop(order.position_id, None)
        return [self._event(account, execution_type, order=order, server_event=server_event)]

    def _event(
        self,
        account: SimAccount,
        execution_type: model_pb2.ProtoOAExecutionType,
        *,
        order: SimOrder | None = None,
        position: SimPosition | None = None,
        server_event: bool = False,
    ) -> messages_pb2.ProtoOAExecutionEvent:
        return execution_event(
            account.account_id,
            execution_type,
            order=order,
            position=position,
            money_digits=account.config.money_digits,
            server_event=server_event,
        )

    def _order_position(self, account: SimAccount, order: SimOrder) -> SimPosition | None:
        if order.position_id is None:
            return None
        return account.placeholders.get(order.position_id) or account.positions.get(
            order.position_id
        )

    @staticmethod
    def _tag(account: SimAccount, messages: list[Message]) -> list[AccountEvent]:
        return [AccountEvent(account.account_id, m) for m in messages]


def _crossed(order: SimOrder, bid: float, ask: float) -> float | None:
    """The fill price when the quote reaches a pending order, else None.

    Limits fill at their limit price; stops fill at the market, which may have moved past.
    """
    buy = order.side == model_pb2.BUY
    market = ask if buy else bid
    if order.order_type == model_pb2.LIMIT and order.limit_price is not None:
        reached = market <= order.limit_price if buy else market >= order.limit_price
        return order.limit_price if reached else None
    if order.order_type == model_pb2.STOP and order.stop_price is not None:
        reached = market >= order.stop_price if buy else market <= order.stop_price
        return market if reached else None
    return None

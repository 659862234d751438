"""Read-only views of the engine: domain models for assertions, protobuf replies for clients."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from cmamd.protocol.proto import messages_pb2, model_pb2
from cmamd.protocol.units import money
from cmamd.sim.config import SymbolConfig
from cmamd.sim.fills import FillEngine
from cmamd.sim.market import Market
from cmamd.sim.protos import (
    deal_proto,
    light_symbol_proto,
    order_proto,
    position_proto,
    symbol_proto,
    trader_proto,
)
from cmamd.sim.records import SimAccount, SimOrder, SimPosition
from cmamd.sim.snapshots import AccountKind, OrderKind, PendingOrder, Position, Side, TraderInfo
from cmamd.sim.validation import Rejected, RequestError


class BrokerViews:
    def __init__(
        self,
        accounts: dict[int, SimAccount],
        market: Market,
        fills: FillEngine,
        asset_ids: dict[str, int],
    ) -> None:
        self._accounts = accounts
        self._market = market
        self._fills = fills
        self._asset_ids = asset_ids

    # --- for assertions (snapshots) -------------------------------------------------

    def account_ids(self) -> list[int]:
        return list(self._accounts)

    def has_account(self, account_id: int) -> bool:
        return account_id in self._accounts

    def trader(self, account_id: int) -> TraderInfo:
        account = self._account(account_id)
        config = account.config
        return TraderInfo(
            account_id=account_id,
            balance=money(account.balance, config.money_digits),
            money_digits=config.money_digits,
            kind=AccountKind.NETTED if account.netted else AccountKind.HEDGED,
            leverage_in_cents=config.leverage_in_cents,
            trading_allowed=config.access_rights == "full",
            deposit_asset=config.deposit_asset,
            broker=config.broker,
            is_live=config.is_live,
        )

    def positions(self, account_id: int) -> list[Position]:
        """Open positions, oldest first."""
        account = self._account(account_id)
        return [_position(p) for p in sorted(account.positions.values(), key=_by_position_id)]

    def orders(self, account_id: int) -> list[PendingOrder]:
        """Working pending orders, oldest first."""
        account = self._account(account_id)
        return [_order(o) for o in sorted(account.orders.values(), key=_by_order_id)]

    def deals(self, account_id: int) -> list[model_pb2.ProtoOADeal]:
        account = self._account(account_id)
        return [deal_proto(d, account.config.money_digits) for d in account.deals]

    def symbols(self, account_id: int) -> list[SymbolConfig]:
        return self._market.symbols(self._account(account_id).config.broker)

    def symbol_named(self, account_id: int, name: str) -> SymbolConfig:
        symbol = self._market.symbol_by_name(self._account(account_id).config.broker, name)
        if symbol is None:
            raise KeyError(f"no symbol {name!r} for account {account_id}")
        return symbol

    def unrealized_pnl(self, account_id: int) -> Decimal:
        account = self._account(account_id)
        total = sum(self._fills.unrealized(account, p) for p in account.positions.values())
        return money(total, account.config.money_digits)

    # --- protobuf replies -------------------------------------------------------------

    def trader_proto(self, account_id: int) -> model_pb2.ProtoOATrader:
        account = self._account(account_id)
        return trader_proto(account, self._asset_ids[account.config.deposit_asset])

    def asset_list(self, account_id: int) -> messages_pb2.ProtoOAAssetListRes:
        self._account(account_id)
        return messages_pb2.ProtoOAAssetListRes(
            ctidTraderAccountId=account_id,
            asset=[
                model_pb2.ProtoOAAsset(assetId=i, name=n, displayName=n)
                for n, i in self._asset_ids.items()
            ],
        )

    def symbols_list(self, account_id: int) -> messages_pb2.ProtoOASymbolsListRes:
        return messages_pb2.ProtoOASymbolsListRes(
            ctidTraderAccountId=account_id,
            symbol=[light_symbol_proto(s, self._asset_ids) for s in self.symbols(account_id)],
        )

    def symbols_by_id(
        self, account_id: int, symbol_ids: Iterable[int]
    ) -> messages_pb2.ProtoOASymbolByIdRes:
        account = self._account(account_id)
        found = []
        for symbol_id in symbol_ids:
            symbol = self._market.symbol(account.config.broker, symbol_id)
            if symbol is None:
                raise RequestError("SYMBOL_NOT_FOUND", f"symbol {symbol_id} not found")
            found.append(symbol_proto(symbol))
        return messages_pb2.ProtoOASymbolByIdRes(ctidTraderAccountId=account_id, symbol=found)

    def reconcile(self, account_id: int) -> messages_pb2.ProtoOAReconcileRes:
        account = self._account(account_id)
        digits = account.config.money_digits
        return messages_pb2.ProtoOAReconcileRes(
            ctidTraderAccountId=account_id,
            position=[
                position_proto(p, digits)
                for p in sorted(account.positions.values(), key=_by_position_id)
            ],
            order=[order_proto(o) for o in sorted(account.orders.values(), key=_by_order_id)],
        )

    def unrealized_pnl_res(
        self, account_id: int
    ) -> messages_pb2.ProtoOAGetPositionUnrealizedPnLRes:
        account = self._account(account_id)
        entries = []
        for position in sorted(account.positions.values(), key=_by_position_id):
            gross = self._fills.unrealized(account, position)
            entries.append(
                model_pb2.ProtoOAPositionUnrealizedPnL(
                    positionId=position.position_id,
                    grossUnrealizedPnL=gross,
                    netUnrealizedPnL=gross,
                )
            )
        return messages_pb2.ProtoOAGetPositionUnrealizedPnLRes(
            ctidTraderAccountId=account_id,
            positionUnrealizedPnL=entries,
            moneyDigits=account.config.money_digits,
        )

    def deal_list(
        self,
        account_id: int,
        from_ms: int | None,
        to_ms: int | None,
        max_rows: int | None,
        position_id: int | None = None,
    ) -> tuple[list[model_pb2.ProtoOADeal], bool]:
        """Deals executed in [from_ms, to_ms], oldest first, at most ``max_rows``."""
        account = self._account(account_id)
        deals = [
            deal_proto(d, account.config.money_digits)
            for d in account.deals
            if _within(d.executed_ms, from_ms, to_ms)
            and (position_id is None or d.position_id == position_id)
        ]
        if max_rows is not None and len(deals) > max_rows:
            return deals[:max_rows], True
        return deals, False

    def order_list(
        self, account_id: int, from_ms: int | None, to_ms: int | None
    ) -> list[model_pb2.ProtoOAOrder]:
        account = self._account(account_id)
        return [
            order_proto(o) for o in account.order_history if _within(o.created_ms, from_ms, to_ms)
        ]

    # --- lookups shared with the engine -----------------------------------------------

    def _account(self, account_id: int) -> SimAccount:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError(f"no account {account_id}") from None

    def _accounts_on(self, broker: str) -> list[SimAccount]:
        return [a for _, a in sorted(self._accounts.items()) if a.config.broker == broker]

    def _symbol_or_reject(self, account: SimAccount, symbol_id: int) -> SymbolConfig:
        symbol = self._market.symbol(account.config.broker, symbol_id)
        if symbol is None:
            raise Rejected("SYMBOL_NOT_FOUND", f"symbol {symbol_id} not found")
        return symbol

    def _position_or_reject(self, account: SimAccount, position_id: int) -> SimPosition:
        position = account.positions.get(position_id)
        if position is None:
            raise Rejected(
                "POSITION_NOT_FOUND", f"position {position_id} not found", position_id=position_id
            )
        return position

    def _order_or_reject(self, account: SimAccount, order_id: int) -> SimOrder:
        order = account.orders.get(order_id)
        if order is None:
            raise Rejected("ORDER_NOT_FOUND", f"order {order_id} not found", order_id=order_id)
        return order


def _by_position_id(position: SimPosition) -> int:
    return position.position_id


def _by_order_id(order: SimOrder) -> int:
    return order.order_id


def _within(timestamp: int, from_ms: int | None, to_ms: int | None) -> bool:
    return (from_ms is None or timestamp >= from_ms) and (to_ms is None or timestamp <= to_ms)


def _position(position: SimPosition) -> Position:
    return Position(
        position_id=position.position_id,
        symbol_id=position.symbol_id,
        side=Side.from_wire(position.side),
        volume=position.volume,
        entry_price=position.price,
        stop_loss=position.stop_loss,
        take_profit=position.take_profit,
        label=position.label,
        comment=position.comment,
        open_ms=position.open_ms,
        updated_ms=position.updated_ms,
    )


def _order(order: SimOrder) -> PendingOrder:
    return PendingOrder(
        order_id=order.order_id,
        symbol_id=order.symbol_id,
        side=Side.from_wire(order.side),
        kind=OrderKind.from_wire(order.order_type),
        volume=order.volume,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        stop_loss=order.stop_loss,
        take_profit=order.take_profit,
        expiration_ms=order.expiration_ms,
        label=order.label,
        client_order_id=order.client_order_id,
        position_id=order.position_id,
        updated_ms=order.updated_ms,
    )

"""Trades the operator places on many accounts at once (``ctl order`` / ``ctl close``).

They are not copies: their label is ``ctl:<group>:<ref>`` and their clientOrderId
``ctl-<ref>-<n>``. The planner recognises copies only by ``cm:<master>:<key>``
(``labels.parse_label``), so it never adopts, resizes or closes one of these; ``ctl close``
in turn only touches positions labelled ``ctl:``, never a copy. Each account gets the
lots the group gives it (``operating.lots_for``), fitted to its own symbol's volume grid,
on its own broker's symbol name (the member's ``symbols:`` rule).

Planning is pure (``plan_orders`` / ``plan_closes``); ``send_*`` do the I/O.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cmamd.accounts.model import AccountState, Side
from cmamd.accounts.session import AccountSession
from cmamd.config.operating import AccountGroup, lots_for
from cmamd.config.rules import SymbolRule, VolumeRule
from cmamd.connection.errors import RequestNotSent
from cmamd.connection.ratelimit import Priority
from cmamd.protocol.errors import OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.protocol.units import volume_to_lots
from cmamd.replication.intents import Skip
from cmamd.replication.mapping import follower_name, symbol_tradable
from cmamd.replication.sizing import fit_volume

LABEL_PREFIX = "ctl:"
FILL_TIMEOUT_S = 15.0
_TRADE_SIDE = {Side.BUY: model_pb2.BUY, Side.SELL: model_pb2.SELL}


def manual_label(scope: str, ref: str) -> str:
    """``ctl:<scope>:<ref>``: never a copy's label (those start ``cm:``)."""
    return f"{LABEL_PREFIX}{scope}:{ref}"


def new_ref() -> str:
    return secrets.token_hex(4)


def is_manual(label: str) -> bool:
    return label.startswith(LABEL_PREFIX)


@dataclass(frozen=True, slots=True)
class Member:
    """One account of an order: its name, how it maps symbols and sizes."""

    account: str
    volume: VolumeRule
    symbols: SymbolRule
    sizing: str = "as_given"

    def lots(self, lots: Decimal) -> Decimal:
        return lots_for(self.sizing, self.volume, lots)


def members_of_group(group: AccountGroup) -> list[Member]:
    return [Member(m.account, m.volume, m.symbols, group.sizing) for m in group.members]


def members_of_accounts(names: Sequence[str]) -> list[Member]:
    return [Member(name, VolumeRule(), SymbolRule()) for name in names]


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    account: str
    account_id: int
    symbol: str
    symbol_id: int | None  # None: skipped, see detail
    volume: int
    lots: str
    relative_sl: int | None = None
    relative_tp: int | None = None
    detail: str = ""


def _relative(pips: Decimal | None, pip_position: int, digits: int) -> int | Skip | None:
    """Pips -> the 1/100000 integer distance, on the symbol's price grid."""
    if pips is None:
        return None
    grid = 10 ** max(5 - digits, 0)
    raw = int(pips * Decimal(10) ** (5 - pip_position))
    value: int
    value = raw // grid * grid
    if value <= 0:
        return Skip(f"{pips} pips is below the symbol's price step")
    return value


def plan_orders(
    members: Sequence[Member],
    states: Mapping[str, AccountState],
    symbol: str,
    lots: Decimal,
    sl_pips: Decimal | None,
    tp_pips: Decimal | None,
) -> list[PlannedOrder]:
    """One order per member, or a skip saying why (unknown symbol, below minimum, ...)."""
    planned: list[PlannedOrder] = []
    for member in members:
        state = states[member.account]
        name = follower_name(member.symbols, symbol)
        spec = state.symbols_by_name.get(name)
        if spec is None:
            planned.append(
                PlannedOrder(
                    member.account,
                    state.account_id,
                    name,
                    None,
                    0,
                    "0",
                    detail=f"no symbol {name} on this account",
                )
            )
            continue
        blocked = symbol_tradable(spec)
        volume = fit_volume(member.volume, member.lots(lots), spec)
        sl = _relative(sl_pips, spec.pip_position, spec.digits)
        tp = _relative(tp_pips, spec.pip_position, spec.digits)
        if blocked is not None or (
            isinstance(volume, Skip) or isinstance(sl, Skip) or isinstance(tp, Skip)
        ):
            why = next(x for x in (blocked, volume, sl, tp) if isinstance(x, Skip))
            planned.append(
                PlannedOrder(
                    member.account, state.account_id, name, None, 0, "0", detail=why.reason
                )
            )
            continue
        shown = str(volume_to_lots(volume, spec.lot_size).normalize())
        planned.append(
            PlannedOrder(
                member.account, state.account_id, name, spec.symbol_id, volume, shown, sl, tp
            )
        )
    return planned


@dataclass(frozen=True, slots=True)
class PlannedClose:
    account: str
    account_id: int
    position_id: int
    volume: int
    symbol: str
    label: str


def plan_closes(
    members: Sequence[Member], states: Mapping[str, AccountState], symbol: str | None
) -> list[PlannedClose]:
    """Every ``ctl:``-labelled position of the members (on ``symbol`` as each maps it)."""
    closes: list[PlannedClose] = []
    for member in members:
        state = states[member.account]
        wanted = follower_name(member.symbols, symbol) if symbol is not None else None
        for position in sorted(state.positions.values(), key=lambda p: p.position_id):
            spec = state.symbols_by_id.get(position.symbol_id)
            name = spec.name if spec is not None else str(position.symbol_id)
            if not is_manual(position.label) or (wanted is not None and name != wanted):
                continue
            closes.append(
                PlannedClose(
                    member.account,
                    state.account_id,
                    position.position_id,
                    position.volume,
                    name,
                    position.label,
                )
            )
    return closes


async def send_order(
    session: AccountSession, order: PlannedOrder, side: Side, label: str, client_id: str
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "account": order.account,
        "symbol": order.symbol,
        "lots": order.lots,
        "volume": order.volume,
    }
    if order.symbol_id is None:
        return {**result, "outcome": "skipped", "detail": order.detail}
    request = pb.ProtoOANewOrderReq(
        ctidTraderAccountId=order.account_id,
        symbolId=order.symbol_id,
        orderType=model_pb2.MARKET,
        tradeSide=_TRADE_SIDE[side],
        volume=order.volume,
        label=label,
        clientOrderId=client_id,
    )
    if order.relative_sl:
        request.relativeStopLoss = order.relative_sl
    if order.relative_tp:
        request.relativeTakeProfit = order.relative_tp
    filled = {model_pb2.ORDER_FILLED, model_pb2.ORDER_CANCELLED, model_pb2.ORDER_REJECTED}
    outcome, detail, position_id = await _trade(session, request, Priority.INCREASE, filled)
    return {**result, "outcome": outcome, "detail": detail, "position_id": position_id}


async def send_close(session: AccountSession, close: PlannedClose) -> dict[str, Any]:
    request = pb.ProtoOAClosePositionReq(
        ctidTraderAccountId=close.account_id, positionId=close.position_id, volume=close.volume
    )
    filled = {model_pb2.ORDER_FILLED, model_pb2.ORDER_CANCELLED, model_pb2.ORDER_REJECTED}
    outcome, detail, _ = await _trade(session, request, Priority.REDUCE, filled)
    return {
        "account": close.account,
        "symbol": close.symbol,
        "position_id": close.position_id,
        "label": close.label,
        "outcome": outcome,
        "detail": detail,
    }


async def _trade(
    session: AccountSession, request: Any, priority: Priority, ends: set[Any]
) -> tuple[str, str, int | None]:
    """(done | rejected | unknown | not_sent, detail, position id). Never resent: an unknown outcome
    is reported as such (``ctl status`` / ``ctl reconcile`` then show what happened)."""
    try:
        reply = await session.connection.request(
            request, priority=priority, account_id=session.account_id
        )
    except OutcomeUnknown as exc:
        return "unknown", str(exc) or "no answer", None
    except OpenApiError as exc:
        return "rejected", exc.code, None
    except RequestNotSent as exc:  # never left the process: nothing happened at the broker
        return "not_sent", str(exc) or type(exc).__name__, None
    if not isinstance(reply, pb.ProtoOAExecutionEvent) or not reply.HasField("order"):
        return "done", "", None
    position_id = reply.order.positionId or None
    result: int = reply.executionType
    if result not in ends:
        try:
            result = await session.wait_for_order(reply.order.orderId, ends, FILL_TIMEOUT_S)
        except TimeoutError:
            return "unknown", f"no outcome for order {reply.order.orderId}", position_id
    if result == model_pb2.ORDER_REJECTED:
        return "rejected", reply.errorCode or "ORDER_REJECTED", position_id
    if result == model_pb2.ORDER_CANCELLED:
        return "rejected", "cancelled unfilled", position_id
    return "done", "", position_id


async def send_all(coros: Sequence[Any]) -> list[dict[str, Any]]:
    """Every account at once: one slow broker does not hold the others back."""
    return list(await asyncio.gather(*coros))

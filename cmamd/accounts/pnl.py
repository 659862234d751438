"""An account's unrealised P&L, kept current off the copy path.

Equity (balance + unrealised P&L) feeds equity sizing and equity stops; the copy path
reads it from the cache and never waits for a request of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

from structlog.stdlib import BoundLogger

from cmamd.accounts.model import AccountState
from cmamd.accounts.startup import startup_for
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.ratelimit import Priority
from cmamd.protocol import units
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.replies import expect_reply


async def unrealized_pnl(connection: OpenApiConnection, account_id: int) -> Decimal:
    reply = expect_reply(
        await connection.request(
            pb.ProtoOAGetPositionUnrealizedPnLReq(ctidTraderAccountId=account_id),
            priority=Priority.BACKGROUND,
        ),
        pb.ProtoOAGetPositionUnrealizedPnLRes,
        "ProtoOAGetPositionUnrealizedPnLReq",
    )
    digits = reply.moneyDigits if reply.HasField("moneyDigits") else 2
    return units.money(sum(p.netUnrealizedPnL for p in reply.positionUnrealizedPnL), digits)


async def refresh_pnl_forever(
    connection: OpenApiConnection,
    state: AccountState,
    interval_s: float,
    is_ready: Callable[[], bool],
    log: BoundLogger,
) -> None:
    while True:
        await asyncio.sleep(interval_s)
        if not is_ready():
            continue
        try:
            # admitted like start-up work: a thousand equity accounts ask more often than
            # the budget serves, and unadmitted they would time out waiting for it
            async with startup_for(connection).admitted():
                state.unrealized_pnl = await unrealized_pnl(connection, state.account_id)
        except Exception as exc:
            log.warning("unrealised P&L refresh failed", error=str(exc))

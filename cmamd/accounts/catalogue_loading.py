"""Loading an account's trader and instruments over its connection (``catalogue.py`` holds
them): once before the account is ready, again for the symbols the server says changed.

The broker's asset and symbol lists are shared by its accounts (``startup.broker_lists``);
symbol details, the trader and conversion quote subscriptions are per account.
"""

from __future__ import annotations

from dataclasses import replace

from structlog.stdlib import BoundLogger

from cmamd.accounts import convert
from cmamd.accounts.catalogue import Catalogue, fetch_broker_lists
from cmamd.accounts.model import TraderInfo
from cmamd.accounts.startup import startup_for
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.ratelimit import Priority
from cmamd.protocol.errors import OpenApiError
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.protocol.replies import expect_reply


def trader_of(
    trader: model_pb2.ProtoOATrader, catalogue: Catalogue, *, is_live: bool
) -> TraderInfo:
    info = convert.trader_info(trader, is_live=is_live)
    return replace(info, deposit_asset=catalogue.asset_names.get(trader.depositAssetId, ""))


async def load_trader_and_catalogue(
    connection: OpenApiConnection, catalogue: Catalogue, *, is_live: bool
) -> TraderInfo:
    account_id = catalogue.account_id
    reply = expect_reply(
        await connection.request(
            pb.ProtoOATraderReq(ctidTraderAccountId=account_id), priority=Priority.QUERY
        ),
        pb.ProtoOATraderRes,
        "ProtoOATraderReq",
    )
    lists = await startup_for(connection).broker_lists(
        reply.trader.brokerName, lambda: fetch_broker_lists(connection.request, account_id)
    )
    await catalogue.load(connection.request, lists)
    return trader_of(reply.trader, catalogue, is_live=is_live)


async def subscribe_conversion_quotes(
    connection: OpenApiConnection, catalogue: Catalogue, deposit_asset_id: int, log: BoundLogger
) -> None:
    try:
        count = await catalogue.subscribe_conversion_quotes(connection.request, deposit_asset_id)
    except OpenApiError as exc:
        if exc.code != "ALREADY_SUBSCRIBED":  # the server kept them: what we wanted
            raise
        return
    log.info("conversion quotes subscribed", symbols=count)


async def reload_symbols(
    connection: OpenApiConnection, catalogue: Catalogue, symbol_ids: list[int], log: BoundLogger
) -> None:
    try:
        names = await catalogue.reload(connection.request, symbol_ids)
    except Exception as exc:  # the old specs stay; the next change event tries again
        log.warning("symbol details refresh failed", error=str(exc))
        return
    if names:
        log.info("symbol details refreshed", symbols=len(names), symbol_names=names)

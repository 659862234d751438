"""Fault injection over real sockets, and the record of what clients sent."""

from __future__ import annotations

import asyncio

from order_requests import market_order

from cmamd.protocol.proto import messages_pb2
from cmamd.sim import SimServer

from .simkit import Connect, access_token, account_id, authorised_client

m = messages_pb2


async def test_swallowed_order_is_executed_but_the_requester_hears_nothing(
    server: SimServer, open_client: Connect
) -> None:
    trader = await authorised_client(open_client, server, "master")
    watcher = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    server.swallow_next(1, {2106})

    await trader.send(m.ProtoOAVersionReq(), "not-swallowed")
    assert (await trader.recv()).client_msg_id == "not-swallowed"
    await trader.send(market_order(master), "lost")
    assert await trader.drain(quiet=0.3) == []
    # The order did execute: the account's other connection sees it, and so does reconcile.
    assert len(await watcher.drain()) == 2
    assert len(server.broker.positions(master)) == 1
    reconcile = await trader.request(m.ProtoOAReconcileReq(ctidTraderAccountId=master))
    assert isinstance(reconcile.message, m.ProtoOAReconcileRes)
    assert len(reconcile.message.position) == 1


async def test_delayed_replies_arrive_late_and_in_order(
    server: SimServer, open_client: Connect
) -> None:
    trader = await authorised_client(open_client, server, "master")
    watcher = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    server.delay_responses(0.4, {2106})

    await trader.send(market_order(master), "slow")
    version = await trader.request(m.ProtoOAVersionReq(), "fast")
    assert version.client_msg_id == "fast"  # other request types are not held back
    assert len(await watcher.drain()) == 2  # other connections get the events at once
    late = [await trader.recv(timeout=2), await trader.recv(timeout=2)]
    assert [e.client_msg_id for e in late] == ["slow", None]
    server.delay_responses(0)
    assert (await trader.request(market_order(master), "now")).client_msg_id == "now"


async def test_rejected_orders_are_not_executed(server: SimServer, open_client: Connect) -> None:
    client = await authorised_client(open_client, server, "master", "follower-hedged")
    master = account_id(server.config, "master")
    follower = account_id(server.config, "follower-hedged")
    server.reject_next_orders(1, "NOT_ENOUGH_MONEY", account_id=follower)

    ok = await client.request(market_order(master))
    assert isinstance(ok.message, m.ProtoOAExecutionEvent)
    await client.drain()
    refused = await client.request(market_order(follower), "r")
    assert isinstance(refused.message, m.ProtoOAOrderErrorEvent)
    assert refused.message.errorCode == "NOT_ENOUGH_MONEY"
    assert refused.message.ctidTraderAccountId == follower
    assert server.broker.positions(follower) == []
    assert await client.drain() == []
    again = await client.request(market_order(follower))
    assert isinstance(again.message, m.ProtoOAExecutionEvent)


async def test_drop_connections_aborts_those_holding_the_account(
    server: SimServer, open_client: Connect
) -> None:
    holder = await authorised_client(open_client, server, "master")
    other = await authorised_client(open_client, server, "follower-hedged")
    assert server.drop_connections(account_id(server.config, "master")) == 1
    assert await holder.wait_closed() is None  # no closing handshake: like a network failure
    version = await other.request(m.ProtoOAVersionReq())
    assert isinstance(version.message, m.ProtoOAVersionRes)
    await asyncio.sleep(0.05)
    assert [c.closed_at is not None for c in server.connections] == [True, False]


async def test_invalidated_token_drops_the_ctid_accounts_until_refreshed(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(
        open_client, server, "master", "master-netted", "follower-hedged"
    )
    master = account_id(server.config, "master")
    old_token = access_token(server, "master")
    server.invalidate_token(master)

    event = await client.recv()
    assert isinstance(event.message, m.ProtoOAAccountsTokenInvalidatedEvent)
    assert sorted(event.message.ctidTraderAccountIds) == sorted(
        [master, account_id(server.config, "master-netted")]
    )
    assert server.connections[0].authorised_accounts == {
        account_id(server.config, "follower-hedged")
    }
    stale = await client.account_auth(master, old_token)
    assert stale.message.errorCode == "CH_ACCESS_TOKEN_INVALID"  # type: ignore[attr-defined]
    assert server.describe()["accounts"][0]["access_token"] is None

    refresh_token = server.tokens.ctid_of(master).refresh_token
    refreshed = await client.request(m.ProtoOARefreshTokenReq(refreshToken=refresh_token))
    assert isinstance(refreshed.message, m.ProtoOARefreshTokenRes)
    again = await client.account_auth(master, refreshed.message.accessToken)
    assert isinstance(again.message, m.ProtoOAAccountAuthRes)


async def test_disconnect_account_needs_a_new_account_auth(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    server.disconnect_account(master)
    event = await client.recv()
    assert isinstance(event.message, m.ProtoOAAccountDisconnectEvent)
    assert event.message.ctidTraderAccountId == master
    refused = await client.request(m.ProtoOATraderReq(ctidTraderAccountId=master))
    assert refused.message.errorCode == "ACCOUNT_NOT_AUTHORIZED"  # type: ignore[attr-defined]
    back = await client.account_auth(master, access_token(server, "master"))
    assert isinstance(back.message, m.ProtoOAAccountAuthRes)


async def test_record_keeps_what_each_connection_sent(
    server: SimServer, open_client: Connect
) -> None:
    first = await authorised_client(open_client, server, "master")
    second = await authorised_client(open_client, server)
    master = account_id(server.config, "master")
    order = market_order(master)
    await first.request(order, "o-1")
    await second.request(m.ProtoOAVersionReq(), "v-1")

    by_conn = {
        c.conn_id: [(r.name, r.client_msg_id) for r in server.record if r.conn_id == c.conn_id]
        for c in server.connections
    }
    first_id, second_id = (c.conn_id for c in server.connections)
    assert by_conn[first_id] == [
        ("ProtoOAApplicationAuthReq", "cm-1"),
        ("ProtoOAAccountAuthReq", "cm-2"),
        ("ProtoOANewOrderReq", "o-1"),
    ]
    assert by_conn[second_id] == [
        ("ProtoOAApplicationAuthReq", "cm-1"),
        ("ProtoOAVersionReq", "v-1"),
    ]
    recorded_order = next(r for r in server.record if r.payload_type == 2106)
    assert recorded_order.message == order
    times = [r.at for r in server.record]
    assert times == sorted(times)

"""OpenApiConnection against the simulator: sessions, trading, errors, tokens, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from order_requests import market_order

from cmamd.connection import Backoff, OpenApiConnection, Priority, refresh_tokens
from cmamd.protocol.codec import Envelope, payload_type_of
from cmamd.protocol.errors import OpenApiError, OrderError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.sim import SimServer

from .conn_fakes import eventually

Connect = Callable[..., OpenApiConnection]


@pytest.fixture
async def connect(sim: SimServer) -> AsyncIterator[Connect]:
    made: list[OpenApiConnection] = []
    described = sim.describe()

    def factory(**overrides: Any) -> OpenApiConnection:
        options: dict[str, Any] = {"name": "sim-test", "backoff": Backoff(0.01, 0.05)}
        options.update(overrides)
        secret = options.pop("client_secret", described["client_secret"])
        conn = OpenApiConnection(sim.url, described["client_id"], secret, **options)
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        await conn.close()


def account(sim: SimServer, name: str) -> dict[str, Any]:
    return next(a for a in sim.describe()["accounts"] if a["name"] == name)


async def authorise(conn: OpenApiConnection, acc: dict[str, Any]) -> None:
    await conn.request(
        pb.ProtoOAAccountAuthReq(
            ctidTraderAccountId=acc["account_id"], accessToken=acc["access_token"]
        ),
        priority=Priority.SESSION,
    )


async def test_several_accounts_share_one_authenticated_connection(
    sim: SimServer, connect: Connect
) -> None:
    conn = connect()
    await conn.start()
    accounts = sim.describe()["accounts"]
    for acc in accounts:
        await authorise(conn, acc)
    assert len(sim.connections) == 1
    assert sim.connections[0].authorised_accounts == {a["account_id"] for a in accounts}
    assert sim.record[0].name == "ProtoOAApplicationAuthReq"


async def test_market_order_events_then_partial_close_then_reconcile(
    sim: SimServer, connect: Connect
) -> None:
    conn = connect()
    events: list[pb.ProtoOAExecutionEvent] = []

    def on_envelope(envelope: Envelope) -> None:
        if isinstance(envelope.message, pb.ProtoOAExecutionEvent):
            events.append(envelope.message)

    conn.add_listener(on_envelope)
    await conn.start()
    master = account(sim, "master")
    master_id = master["account_id"]
    await authorise(conn, master)

    accepted = await conn.request(market_order(master_id, 300_000), priority=Priority.INCREASE)
    assert isinstance(accepted, pb.ProtoOAExecutionEvent)
    assert accepted.executionType == model_pb2.ORDER_ACCEPTED
    await eventually(lambda: len(events) == 2)
    assert [e.executionType for e in events] == [model_pb2.ORDER_ACCEPTED, model_pb2.ORDER_FILLED]
    position_id = events[1].position.positionId

    closing = await conn.request(
        pb.ProtoOAClosePositionReq(
            ctidTraderAccountId=master_id, positionId=position_id, volume=100_000
        ),
        priority=Priority.REDUCE,
    )
    assert isinstance(closing, pb.ProtoOAExecutionEvent)
    await eventually(lambda: len(events) == 4)
    assert events[3].executionType == model_pb2.ORDER_FILLED
    assert events[3].deal.HasField("closePositionDetail")

    reconciled = await conn.request(pb.ProtoOAReconcileReq(ctidTraderAccountId=master_id))
    assert isinstance(reconciled, pb.ProtoOAReconcileRes)
    assert [(p.positionId, p.tradeData.volume) for p in reconciled.position] == [
        (position_id, 200_000)
    ]
    assert [p.volume for p in sim.broker.positions(master_id)] == [200_000]


async def test_server_errors_arrive_as_typed_exceptions(sim: SimServer, connect: Connect) -> None:
    conn = connect()
    await conn.start()
    master = account(sim, "master")
    await authorise(conn, master)
    with pytest.raises(OpenApiError) as again:
        await authorise(conn, master)
    assert again.value.code == "ALREADY_LOGGED_IN"
    with pytest.raises(OrderError) as bad_volume:
        await conn.request(market_order(master["account_id"], 12_345))
    assert bad_volume.value.code == "TRADING_BAD_VOLUME"
    assert bad_volume.value.account_id == master["account_id"]
    stranger = account(sim, "follower-netted")["account_id"]
    with pytest.raises(OpenApiError) as unauthorised:
        await conn.request(pb.ProtoOATraderReq(ctidTraderAccountId=stranger))
    assert unauthorised.value.code == "ACCOUNT_NOT_AUTHORIZED"
    assert sim.broker.positions(master["account_id"]) == []


async def test_token_refresh_rotates_the_pair(sim: SimServer, connect: Connect) -> None:
    conn = connect()
    pushes: list[Envelope] = []
    conn.add_listener(pushes.append)
    await conn.start()
    follower = account(sim, "follower-hedged")
    await authorise(conn, follower)

    pair = await refresh_tokens(conn, follower["refresh_token"])
    assert pair.refresh_token != follower["refresh_token"]
    assert pair.access_token != follower["access_token"]
    assert pair.token_type == "bearer" and pair.expires_in_s > 0
    assert pair.access_token not in repr(pair) and pair.refresh_token not in repr(pair)
    await eventually(lambda: any(e.name == "ProtoOAAccountsTokenInvalidatedEvent" for e in pushes))

    await authorise(conn, {**follower, "access_token": pair.access_token})
    with pytest.raises(OpenApiError) as old_access:
        await authorise(
            conn, account(sim, "follower-netted") | {"access_token": follower["access_token"]}
        )
    assert old_access.value.code == "CH_ACCESS_TOKEN_INVALID"
    with pytest.raises(OpenApiError) as old_refresh:
        await refresh_tokens(conn, follower["refresh_token"])
    assert old_refresh.value.code == "CH_ACCESS_TOKEN_INVALID"


async def test_bad_credentials_are_refused_once(sim: SimServer, connect: Connect) -> None:
    conn = connect(client_secret="not-the-secret")
    with pytest.raises(OpenApiError) as raised:
        await conn.start()
    assert raised.value.code == "CH_CLIENT_AUTH_FAILURE"
    await asyncio.sleep(0.2)
    assert len(sim.connections) == 1
    assert conn.state == "closed"


async def test_idle_connection_sends_heartbeats(sim: SimServer, connect: Connect) -> None:
    conn = connect(heartbeat_interval_s=0.2)
    pushes: list[str] = []
    conn.add_listener(lambda e: pushes.append(e.name))
    await conn.start()
    await asyncio.sleep(0.7)
    beats = [r for r in sim.record if r.name == "ProtoHeartbeatEvent"]
    assert len(beats) >= 3
    assert {r.conn_id for r in beats} == {sim.connections[0].conn_id}
    assert pushes == []  # server heartbeats are not news for listeners


async def test_account_events_reach_listeners_and_the_connection_survives(
    sim: SimServer, connect: Connect
) -> None:
    conn = connect()
    pushes: list[str] = []
    conn.add_listener(lambda e: pushes.append(e.name))
    await conn.start()
    master = account(sim, "master")
    await authorise(conn, master)
    sim.disconnect_account(master["account_id"])
    await eventually(lambda: "ProtoOAAccountDisconnectEvent" in pushes)
    await authorise(conn, master)
    sim.invalidate_token(master["account_id"])
    await eventually(lambda: "ProtoOAAccountsTokenInvalidatedEvent" in pushes)
    assert conn.is_ready and len(sim.connections) == 1


async def test_reconnect_reauthorises_and_never_resends_an_in_flight_order(
    sim: SimServer, connect: Connect
) -> None:
    accounts = [account(sim, "master"), account(sim, "follower-hedged")]

    async def reauthorise(c: OpenApiConnection) -> None:
        for acc in accounts:
            await authorise(c, acc)

    conn = connect(request_timeout_s=3.0)
    conn.add_session_hook(reauthorise)
    await conn.start()
    master_id = accounts[0]["account_id"]
    sim.delay_responses(0.5, [payload_type_of(pb.ProtoOANewOrderReq)])
    order = asyncio.create_task(conn.request(market_order(master_id, 100_000)))
    await eventually(lambda: any(r.name == "ProtoOANewOrderReq" for r in sim.record))
    assert sim.drop_connections() == 1
    with pytest.raises(OutcomeUnknown):
        await order
    sim.delay_responses(0)

    await conn.wait_ready(3)
    reconciled = await conn.request(pb.ProtoOAReconcileReq(ctidTraderAccountId=master_id))
    assert isinstance(reconciled, pb.ProtoOAReconcileRes)
    # The server did execute it: resending would have doubled the position.
    assert len(reconciled.position) == 1
    assert len([r for r in sim.record if r.name == "ProtoOANewOrderReq"]) == 1
    second = sim.connections[1]
    assert second.authorised_accounts == {a["account_id"] for a in accounts}
    names = [r.name for r in sim.record if r.conn_id == second.conn_id]
    assert names[:3] == [
        "ProtoOAApplicationAuthReq",
        "ProtoOAAccountAuthReq",
        "ProtoOAAccountAuthReq",
    ]
    assert names[3] == "ProtoOAReconcileReq"
    assert conn.stats["reconnects"] == 1


async def test_a_swallowed_answer_is_outcome_unknown_and_not_resent(
    sim: SimServer, connect: Connect
) -> None:
    conn = connect()
    await conn.start()
    master = account(sim, "master")
    await authorise(conn, master)
    sim.swallow_next(1, [payload_type_of(pb.ProtoOANewOrderReq)])
    with pytest.raises(OutcomeUnknown):
        await conn.request(market_order(master["account_id"], 100_000), timeout=0.5)
    assert len([r for r in sim.record if r.name == "ProtoOANewOrderReq"]) == 1
    assert len(sim.broker.positions(master["account_id"])) == 1

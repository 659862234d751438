"""Reconnects against the scripted server: what is resent, what is not, and in which order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from order_requests import market_order

from cmamd.connection import (
    ConnectionClosedError,
    OpenApiConnection,
    Priority,
    SendTimeout,
)
from cmamd.protocol.codec import Envelope
from cmamd.protocol.errors import OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

from .conn_fakes import (
    FakeOpenApi,
    Reply,
    default_replies,
    eventually,
    quick_connection,
)


@pytest.fixture
async def conn(fake_server: FakeOpenApi) -> AsyncIterator[OpenApiConnection]:
    connection = quick_connection(fake_server.url, name="reconnect-test")
    yield connection
    await connection.close()


def new_order() -> pb.ProtoOANewOrderReq:
    return market_order(5, 1000, model_pb2.SELL)


def swallow_orders(envelope: Envelope) -> list[Reply] | None:
    if isinstance(envelope.message, pb.ProtoOANewOrderReq):
        return None
    return default_replies(envelope)


async def test_hooks_reauthorise_before_queued_requests_are_released(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    hook_runs: list[int] = []

    async def reauthorise(c: OpenApiConnection) -> None:
        await c.request(
            pb.ProtoOAAccountAuthReq(ctidTraderAccountId=5, accessToken="token-5"),
            priority=Priority.SESSION,
        )
        await c.request(pb.ProtoOAVersionReq())  # any priority works inside a hook
        hook_runs.append(len(fake_server.connections))

    conn.add_session_hook(reauthorise)
    states: list[str] = []
    conn.add_state_listener(states.append)
    await conn.start()
    assert hook_runs == [1]
    await fake_server.drop_all()
    await eventually(lambda: "disconnected" in states)
    reply = await conn.request(pb.ProtoOAVersionReq(), priority=Priority.QUERY, timeout=3)
    assert isinstance(reply, pb.ProtoOAVersionRes)
    assert hook_runs == [1, 2]
    assert fake_server.names(1) == [
        "ProtoOAApplicationAuthReq",
        "ProtoOAAccountAuthReq",
        "ProtoOAVersionReq",  # the hook's own
        "ProtoOAVersionReq",  # the queued one, released after the hook
    ]
    assert conn.stats["reconnects"] == 1
    conn.remove_session_hook(reauthorise)


async def test_in_flight_request_at_a_drop_is_outcome_unknown_and_never_resent(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    fake_server.responder = swallow_orders
    await conn.start()
    order = asyncio.create_task(conn.request(new_order(), priority=Priority.INCREASE))
    await eventually(lambda: fake_server.of(pb.ProtoOANewOrderReq))
    await fake_server.drop_all()
    with pytest.raises(OutcomeUnknown):
        await order
    await conn.wait_ready(3)
    assert isinstance(await conn.request(pb.ProtoOAVersionReq()), pb.ProtoOAVersionRes)
    assert len(fake_server.of(pb.ProtoOANewOrderReq)) == 1


async def test_request_queued_while_down_is_sent_once_after_reconnect(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    await conn.start()
    fake_server.answer_app_auth = False  # the next sessions hang in the handshake
    await fake_server.drop_all()
    await eventually(lambda: conn.state == "disconnected")
    queued = asyncio.create_task(conn.request(pb.ProtoOAVersionReq(), timeout=5))
    await asyncio.sleep(0.3)
    assert conn.stats["queued"] == 1
    fake_server.answer_app_auth = True
    for ws in fake_server.connections:
        ws.transport.abort()  # the stuck handshake gives up and retries
    assert isinstance(await queued, pb.ProtoOAVersionRes)
    assert len(fake_server.of(pb.ProtoOAVersionReq)) == 1


async def test_request_that_never_found_a_link_times_out_unsent(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    await conn.start()
    await fake_server.stop()
    await fake_server.drop_all()
    with pytest.raises(SendTimeout) as raised:
        await conn.request(pb.ProtoOAVersionReq(), timeout=0.3)
    assert isinstance(raised.value, TimeoutError)  # callers catching timeouts still do
    assert "ProtoOAVersionReq" not in fake_server.names()


async def test_client_disconnect_event_reconnects(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    seen: list[str] = []
    conn.add_listener(lambda e: seen.append(e.name))
    await conn.start()
    await fake_server.push(pb.ProtoOAClientDisconnectEvent(reason="maintenance"))
    await eventually(lambda: len(fake_server.connections) == 2 and conn.is_ready)
    assert seen == ["ProtoOAClientDisconnectEvent"]


async def test_credentials_refused_on_reconnect_close_for_good(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    states: list[str] = []
    conn.add_state_listener(states.append)
    await conn.start()
    fake_server.client_secret = "rotated"
    await fake_server.drop_all()
    await eventually(lambda: "disconnected" in states)
    waiting = asyncio.create_task(conn.request(pb.ProtoOAVersionReq(), timeout=5))
    with pytest.raises(OpenApiError) as raised:
        await waiting
    assert raised.value.code == "CH_CLIENT_AUTH_FAILURE"
    assert conn.state == "closed"
    assert states[-2:] == ["disconnected", "closed"]
    await asyncio.sleep(0.2)
    assert len(fake_server.connections) == 2  # no retry loop
    with pytest.raises(OpenApiError):
        await conn.wait_ready(1)


async def test_close_fails_in_flight_and_queued_requests_distinctly(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    fake_server.responder = swallow_orders
    await conn.start()
    in_flight = asyncio.create_task(conn.request(new_order()))
    await eventually(lambda: fake_server.of(pb.ProtoOANewOrderReq))
    fake_server.answer_app_auth = False
    await conn.close()
    with pytest.raises(OutcomeUnknown):
        await in_flight
    with pytest.raises(ConnectionClosedError):
        await conn.request(pb.ProtoOAVersionReq())
    assert conn.state == "closed"


async def test_failing_hook_does_not_block_the_others(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    ran: list[str] = []

    async def broken(c: OpenApiConnection) -> None:
        ran.append("broken")
        raise RuntimeError("hook bug")

    async def healthy(c: OpenApiConnection) -> None:
        await c.request(pb.ProtoOAVersionReq(), priority=Priority.SESSION)
        ran.append("healthy")

    conn.add_session_hook(broken)
    conn.add_session_hook(healthy)
    await conn.start()
    assert sorted(ran) == ["broken", "healthy"]
    assert conn.is_ready

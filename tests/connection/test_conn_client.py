"""OpenApiConnection mechanics against a tiny scripted server over real loopback sockets."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog
from google.protobuf.message import Message
from order_requests import market_order
from ports import free_port

from cmamd.connection import (
    ConnectionClosedError,
    OpenApiConnection,
    Priority,
)
from cmamd.connection.ratelimit import DEFAULT_MARGIN_S
from cmamd.protocol.codec import Envelope
from cmamd.protocol.errors import OpenApiError, OrderError, OutcomeUnknown, RateLimited
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

from .conn_fakes import (
    FakeOpenApi,
    Reply,
    default_replies,
    eventually,
    oa_error,
    quick_connection,
)

Factory = Callable[..., OpenApiConnection]


@pytest.fixture
async def make_conn(fake_server: FakeOpenApi) -> AsyncIterator[Factory]:
    made: list[OpenApiConnection] = []

    def factory(**overrides: Any) -> OpenApiConnection:
        options: dict[str, Any] = {
            "name": "test",
            "heartbeat_interval_s": 5.0,
            "silence_timeout_s": 10.0,
        }
        options.update(overrides)
        conn = quick_connection(options.pop("url", fake_server.url), **options)
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        await conn.close()


def new_order(account_id: int = 5) -> pb.ProtoOANewOrderReq:
    return market_order(account_id)


def execution(
    kind: model_pb2.ProtoOAExecutionType, account_id: int = 5
) -> pb.ProtoOAExecutionEvent:
    return pb.ProtoOAExecutionEvent(ctidTraderAccountId=account_id, executionType=kind)


def reply_to(cls: type[Message], *replies: Any) -> Callable[[Envelope], list[Any] | None]:
    """A responder answering ``cls`` requests with ``replies`` and others by default."""

    def responder(envelope: Envelope) -> list[Any] | None:
        if isinstance(envelope.message, cls):
            return list(replies)
        return default_replies(envelope)

    return responder


# -- handshake and configuration ----------------------------------------------------------
async def test_app_auth_goes_first_then_ready(fake_server: FakeOpenApi, make_conn: Factory) -> None:
    conn = make_conn()
    states: list[str] = []
    conn.add_state_listener(states.append)
    await conn.start()
    assert conn.is_ready
    assert fake_server.names(0)[0] == "ProtoOAApplicationAuthReq"
    auth = fake_server.of(pb.ProtoOAApplicationAuthReq)[0].envelope
    assert auth.client_msg_id  # correlated like any request
    await conn.close()
    assert states == ["connected", "ready", "closed"]


async def test_bad_credentials_fail_start_without_retrying(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    conn = make_conn(client_secret="wrong-secret-value")
    with structlog.testing.capture_logs() as logs, pytest.raises(OpenApiError) as raised:
        await conn.start()
    assert raised.value.code == "CH_CLIENT_AUTH_FAILURE"
    assert conn.state == "closed"
    await asyncio.sleep(0.2)
    assert len(fake_server.connections) == 1
    assert logs and "wrong-secret-value" not in repr(logs)
    with pytest.raises(OpenApiError):
        await conn.request(pb.ProtoOAVersionReq())


async def test_start_gives_up_after_connect_attempts(make_conn: Factory) -> None:
    conn = make_conn(url=f"ws://127.0.0.1:{free_port()}")  # a port nobody listens on
    with pytest.raises(OSError):
        await conn.start(connect_attempts=3)
    assert conn.state == "closed"


@pytest.mark.parametrize(
    "url", ["ws://example.com:5035", "ws://10.0.0.1:5035", "http://127.0.0.1:1", "wss://"]
)
def test_unencrypted_or_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        OpenApiConnection(url, "id", "secret")


@pytest.mark.parametrize(
    "url",
    ["ws://localhost:1", "ws://127.3.0.1:1", "ws://[::1]:1", "wss://demo.ctraderapi.com:5035"],
)
def test_loopback_ws_and_any_wss_are_accepted(url: str) -> None:
    OpenApiConnection(url, "id", "secret")


def test_ssl_context_needs_wss_and_max_rps_is_capped() -> None:
    with pytest.raises(ValueError):
        OpenApiConnection("ws://127.0.0.1:1", "id", "s", ssl_context=ssl.create_default_context())
    with pytest.raises(ValueError, match="50"):
        OpenApiConnection("wss://demo.ctraderapi.com:5035", "id", "s", max_rps=60)


# -- requests, replies, listeners --------------------------------------------------------
async def test_replies_are_returned_and_errors_raised_typed(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    refusal = pb.ProtoOAOrderErrorEvent(
        ctidTraderAccountId=5, errorCode="TRADING_BAD_VOLUME", description="bad volume"
    )
    fake_server.responder = reply_to(pb.ProtoOANewOrderReq, refusal)
    conn = make_conn()
    pushed: list[Envelope] = []
    conn.add_listener(pushed.append)
    await conn.start()
    version = await conn.request(pb.ProtoOAVersionReq())
    assert isinstance(version, pb.ProtoOAVersionRes) and version.version == "fake-1"
    with pytest.raises(OpenApiError) as raised:
        await conn.request(pb.ProtoOATraderReq(ctidTraderAccountId=9), account_id=9)
    assert raised.value.code == "ACCOUNT_NOT_AUTHORIZED" and raised.value.account_id == 9
    with pytest.raises(OrderError) as order_raised:
        await conn.request(new_order(), priority=Priority.INCREASE)
    assert order_raised.value.code == "TRADING_BAD_VOLUME"
    # The refusal also reached listeners (account state sees every order event).
    assert [e.name for e in pushed] == ["ProtoOAOrderErrorEvent"]
    ids = [r.envelope.client_msg_id for r in fake_server.received]
    assert len(set(ids)) == len(ids)


async def test_execution_reply_resolves_and_every_event_reaches_listeners(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    fake_server.responder = reply_to(
        pb.ProtoOANewOrderReq,
        execution(model_pb2.ORDER_ACCEPTED),
        execution(model_pb2.ORDER_FILLED),
    )
    conn = make_conn()
    events: list[int] = []

    def on_event(envelope: Envelope) -> None:
        assert isinstance(envelope.message, pb.ProtoOAExecutionEvent)
        events.append(envelope.message.executionType)

    conn.add_listener(on_event)
    await conn.start()
    reply = await conn.request(new_order(), priority=Priority.INCREASE)
    assert isinstance(reply, pb.ProtoOAExecutionEvent)
    assert reply.executionType == model_pb2.ORDER_ACCEPTED
    await eventually(lambda: len(events) == 2)
    assert events == [model_pb2.ORDER_ACCEPTED, model_pb2.ORDER_FILLED]


async def test_pushes_reach_listeners_and_bad_frames_or_listeners_do_no_harm(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    conn = make_conn()
    seen: list[str] = []
    broken_calls: list[str] = []

    def broken(envelope: Envelope) -> None:
        broken_calls.append(envelope.name)
        raise RuntimeError("listener bug")

    conn.add_listener(broken)
    conn.add_listener(lambda e: seen.append(e.name))
    await conn.start()
    await fake_server.push("a text frame")
    await fake_server.push(b"\xff\xfe not protobuf")
    await fake_server.push(pb.ProtoOATraderUpdatedEvent(ctidTraderAccountId=5, trader=trader()))
    await fake_server.push(pb.ProtoOAVersionRes(version="late"), client_msg_id="nobody.1")
    await eventually(lambda: len(seen) == 2)
    assert seen == ["ProtoOATraderUpdatedEvent", "ProtoOAVersionRes"]
    assert conn.is_ready
    assert isinstance(await conn.request(pb.ProtoOAVersionReq()), pb.ProtoOAVersionRes)
    conn.remove_listener(broken)
    await fake_server.push(pb.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=5))
    await eventually(lambda: len(seen) == 3)
    assert seen[-1] == "ProtoOAAccountDisconnectEvent"
    assert broken_calls == ["ProtoOATraderUpdatedEvent", "ProtoOAVersionRes"]
    assert len(fake_server.connections) == 1


def trader() -> Any:
    return model_pb2.ProtoOATrader(ctidTraderAccountId=5, balance=100, depositAssetId=1)


async def test_no_reply_within_timeout_is_outcome_unknown(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    fake_server.responder = lambda envelope: None
    conn = make_conn()
    await conn.start()
    with pytest.raises(OutcomeUnknown):
        await conn.request(new_order(), timeout=0.3)
    assert conn.stats["in_flight"] == 0
    assert len(fake_server.of(pb.ProtoOANewOrderReq)) == 1


async def test_rate_limited_request_is_resent_after_retry_after(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    throttled = oa_error("REQUEST_FREQUENCY_EXCEEDED", retry_after=1)
    replies: Iterator[list[Reply]] = iter([[throttled], [pb.ProtoOAVersionRes(version="2")]])
    fake_server.responder = lambda envelope: next(replies)
    conn = make_conn()
    await conn.start()
    reply = await conn.request(pb.ProtoOAVersionReq())
    assert isinstance(reply, pb.ProtoOAVersionRes) and reply.version == "2"
    first, second = fake_server.of(pb.ProtoOAVersionReq)
    assert second.at - first.at >= 1.0
    assert first.envelope.client_msg_id != second.envelope.client_msg_id
    assert conn.stats["rate_limited"] == 1
    # the server saw our frames closer than the margin allows for: the margin widens
    assert conn.stats["rate_margin_ms"] > DEFAULT_MARGIN_S * 1000


async def test_rate_limit_resends_are_bounded(fake_server: FakeOpenApi, make_conn: Factory) -> None:
    fake_server.responder = lambda envelope: [oa_error("BLOCKED_PAYLOAD_TYPE", retry_after=0)]
    conn = make_conn(rate_limit_attempts=2)
    await conn.start()
    with pytest.raises(RateLimited):
        await conn.request(pb.ProtoOAVersionReq())
    assert len(fake_server.of(pb.ProtoOAVersionReq)) == 2


async def test_urgent_requests_overtake_queued_ones(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    conn = make_conn(max_rps=1)
    await conn.start()  # the app auth spent the only slot of this window
    background = [
        asyncio.create_task(conn.request(pb.ProtoOAVersionReq(), priority=Priority.BACKGROUND))
        for _ in range(3)
    ]
    await asyncio.sleep(0.05)
    urgent = asyncio.create_task(
        conn.request(
            pb.ProtoOAAccountAuthReq(ctidTraderAccountId=7, accessToken="t"),
            priority=Priority.REDUCE,
        )
    )
    await urgent
    assert fake_server.names(0)[1] == "ProtoOAAccountAuthReq"
    assert conn.stats["throttled_waits"] >= 4
    await conn.close()
    for task in background:
        with pytest.raises(ConnectionClosedError):
            await task


# -- keeping the link alive ---------------------------------------------------------------
async def test_heartbeats_keep_an_idle_link_busy(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    conn = make_conn(heartbeat_interval_s=0.2)
    await conn.start()
    await asyncio.sleep(0.8)
    beats = [r.at for r in fake_server.received if r.name == "ProtoHeartbeatEvent"]
    assert len(beats) >= 3
    sends = [r.at for r in fake_server.received]
    assert max(b - a for a, b in itertools.pairwise(sends)) < 0.2
    assert conn.stats["heartbeats_sent"] == len(beats)


async def test_a_silent_server_is_declared_dead_and_replaced(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    fake_server.responder = lambda envelope: None  # not even the liveness probe is answered
    conn = make_conn(heartbeat_interval_s=0.1, silence_timeout_s=0.4)
    await conn.start()
    await eventually(lambda: len(fake_server.names(1)) > 0)
    assert "ProtoOAVersionReq" in fake_server.names(0)  # probed before giving up
    assert fake_server.names(1)[0] == "ProtoOAApplicationAuthReq"
    await conn.wait_ready(2)
    assert conn.stats["reconnects"] >= 1


async def test_a_quiet_server_that_answers_probes_is_kept(
    fake_server: FakeOpenApi, make_conn: Factory
) -> None:
    conn = make_conn(heartbeat_interval_s=0.1, silence_timeout_s=0.6)
    await conn.start()
    await asyncio.sleep(1.5)  # five times the probe delay: without answers it would be dead
    assert len(fake_server.connections) == 1
    assert len(fake_server.of(pb.ProtoOAVersionReq)) >= 2

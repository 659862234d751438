"""Limits over real sockets: rate limit, heartbeats and idle timeout, frame size, connections."""

from __future__ import annotations

import asyncio

from cmamd.protocol.proto import common_pb2, messages_pb2
from cmamd.sim import SimConfig, SimServer
from cmamd.sim.session import FrameEvent

from .simkit import Connect, authorised_client

m = messages_pb2


async def test_the_51st_request_in_a_second_is_refused_and_not_processed(
    open_client: Connect,
) -> None:
    now = [100.0]
    async with SimServer(SimConfig.default(), monotonic=lambda: now[0]) as sim:
        client = await authorised_client(open_client, sim)  # the app auth is request 1
        for index in range(49):
            await client.send(m.ProtoOAVersionReq(), f"v-{index}")
        for _ in range(5):  # heartbeats are not counted
            await client.send(common_pb2.ProtoHeartbeatEvent())
        await client.send(m.ProtoOAGetAccountListByAccessTokenReq(accessToken="x"), "over")
        replies = [await client.recv() for _ in range(50)]
        assert all(isinstance(r.message, m.ProtoOAVersionRes) for r in replies[:49])
        refused = replies[49]
        assert isinstance(refused.message, m.ProtoOAErrorRes)
        assert refused.message.errorCode == "REQUEST_FREQUENCY_EXCEEDED"
        assert refused.message.retryAfter == 1
        assert refused.client_msg_id == "over"
        assert sim.rate_limit_rejections == 1

        now[0] += 1.0  # the window has rolled on
        again = await client.request(m.ProtoOAVersionReq())
        assert isinstance(again.message, m.ProtoOAVersionRes)
        conn_id = sim.connections[0].conn_id
        assert sim.max_requests_in_any_window(conn_id) == 51
        assert len([r for r in sim.record if r.name == "ProtoHeartbeatEvent"]) == 5


async def test_the_rate_window_counts_requests_when_received_not_when_handled(
    open_client: Connect,
) -> None:
    # The simulator handles a burst one request after the other; stamped when handled, a
    # slow handler packed requests received over a second apart into one window.
    now = [100.0]
    slow_handling = [False]

    def handle_slowly(event: FrameEvent) -> None:
        if event.direction == "in" and slow_handling[0]:
            now[0] += 0.6

    async with SimServer(SimConfig.default(max_rps=2), monotonic=lambda: now[0]) as sim:
        sim.add_frame_listener(handle_slowly)
        client = await authorised_client(open_client, sim)  # request 1 at 100.0
        now[0] = 102.0
        slow_handling[0] = True
        await client.send(m.ProtoOAVersionReq(), "a")  # received at 102.0, handled at 102.6
        await client.send(m.ProtoOAVersionReq(), "b")  # received by 102.6, handled at 103.2
        replies = [await client.recv() for _ in range(2)]
        slow_handling[0] = False
        now[0] = 103.05  # over a second after both were received
        replies.append(await client.request(m.ProtoOAVersionReq(), "c"))
        assert [r.client_msg_id for r in replies] == ["a", "b", "c"]
        assert all(isinstance(r.message, m.ProtoOAVersionRes) for r in replies), replies
        assert sim.rate_limit_rejections == 0
        received = [r.at for r in sim.record if r.name == "ProtoOAVersionReq"]
        assert received[0] == 102.0 and received[1] <= 102.6 and received[2] == 103.05


async def test_silent_connection_is_closed_after_the_idle_timeout(open_client: Connect) -> None:
    config = SimConfig.default(heartbeat_interval_s=0.05, idle_timeout_s=0.3)
    async with SimServer(config) as sim:
        client = await authorised_client(open_client, sim)
        beat = await client.recv(heartbeats=True)  # the server keeps sending heartbeats
        assert beat.payload_type == 51
        assert await client.wait_closed(timeout=3) == 1000
        assert sim.connections[0].closed_at is not None


async def test_client_heartbeats_keep_the_connection_open(open_client: Connect) -> None:
    config = SimConfig.default(heartbeat_interval_s=5, idle_timeout_s=0.3)
    async with SimServer(config) as sim:
        client = await authorised_client(open_client, sim)
        for _ in range(8):  # 0.8 s, well past the idle timeout
            await asyncio.sleep(0.1)
            await client.send(common_pb2.ProtoHeartbeatEvent())
        version = await client.request(m.ProtoOAVersionReq())
        assert isinstance(version.message, m.ProtoOAVersionRes)
        assert sim.connections[0].closed_at is None


async def test_oversized_frame_is_refused_and_closes(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server)
    await client.connection.send(b"\x08" * ((1 << 20) + 1))
    reply = await client.recv()
    assert reply.message.errorCode == "FRAME_TOO_LONG"  # type: ignore[attr-defined]
    assert await client.wait_closed() == 1009


async def test_connection_limit_counts_authenticated_connections(open_client: Connect) -> None:
    async with SimServer(SimConfig.default(max_connections=2)) as sim:
        first = await authorised_client(open_client, sim)
        await authorised_client(open_client, sim)
        third = await open_client(sim.url)
        refused = await third.request(
            m.ProtoOAApplicationAuthReq(
                clientId=sim.config.client_id, clientSecret=sim.config.client_secret
            )
        )
        assert refused.message.errorCode == "CONNECTIONS_LIMIT_EXCEEDED"  # type: ignore[attr-defined]
        assert await third.wait_closed() is not None
        await first.close()
        await asyncio.sleep(0.05)
        await authorised_client(open_client, sim)


async def test_maintenance_refuses_new_sessions_only(
    server: SimServer, open_client: Connect
) -> None:
    existing = await authorised_client(open_client, server)
    until = server.broker.now_ms() + 60_000
    server.maintenance(until)
    newcomer = await open_client()
    reply = await newcomer.request(
        m.ProtoOAApplicationAuthReq(
            clientId=server.config.client_id, clientSecret=server.config.client_secret
        )
    )
    assert isinstance(reply.message, m.ProtoOAErrorRes)
    assert reply.message.errorCode == "SERVER_IS_UNDER_MAINTENANCE"
    assert reply.message.maintenanceEndTimestamp == until
    assert await newcomer.wait_closed() is not None
    still = await existing.request(m.ProtoOAVersionReq())
    assert isinstance(still.message, m.ProtoOAVersionRes)
    server.maintenance(None)
    await authorised_client(open_client, server)


async def test_history_requests_have_their_own_lower_limit(open_client: Connect) -> None:
    now = [100.0]
    async with SimServer(SimConfig.default(), monotonic=lambda: now[0]) as sim:
        client = await authorised_client(open_client, sim, "master")
        master = sim.config.account("master").account_id
        for index in range(5):
            reply = await client.request(m.ProtoOADealListReq(ctidTraderAccountId=master))
            assert isinstance(reply.message, m.ProtoOADealListRes), index
        sixth = await client.request(m.ProtoOAOrderListReq(ctidTraderAccountId=master))
        assert sixth.message.errorCode == "REQUEST_FREQUENCY_EXCEEDED"  # type: ignore[attr-defined]
        other = await client.request(m.ProtoOAReconcileReq(ctidTraderAccountId=master))
        assert isinstance(other.message, m.ProtoOAReconcileRes)
        now[0] += 1.0
        later = await client.request(m.ProtoOAOrderListReq(ctidTraderAccountId=master))
        assert isinstance(later.message, m.ProtoOAOrderListRes)

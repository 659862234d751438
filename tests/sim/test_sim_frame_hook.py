"""The public frame hook: every frame in and out of the simulator's socket, timestamped."""

from __future__ import annotations

import itertools

from cmamd.connection.client import OpenApiConnection
from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.sim import FrameEvent, SimConfig, SimServer


async def test_frames_in_and_out_are_reported_in_order_with_their_time() -> None:
    events: list[FrameEvent] = []
    async with SimServer(SimConfig.default()) as sim:
        sim.add_frame_listener(events.append)
        described = sim.describe()
        conn = OpenApiConnection(
            sim.url, described["client_id"], described["client_secret"], name="hook"
        )
        await conn.start()
        try:
            await conn.request(pb.ProtoOAVersionReq())
        finally:
            await conn.close()
        sim.remove_frame_listener(events.append)
    named = [(e.direction, codec.decode(e.frame).name) for e in events]
    assert named[:4] == [
        ("in", "ProtoOAApplicationAuthReq"),
        ("out", "ProtoOAApplicationAuthRes"),
        ("in", "ProtoOAVersionReq"),
        ("out", "ProtoOAVersionRes"),
    ]
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    assert {e.conn_id for e in events} == {sim.connections[0].conn_id}

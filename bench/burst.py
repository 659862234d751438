"""Scenario 2: one connection fires a burst of requests at the simulator.

``throttled``: ``OpenApiConnection`` (the daemon's client, max_rps 50) is handed all
requests at once (ProtoOAVersionReq: cheap to answer, so the client-side throttle is all
that is measured). ``unthrottled``: a bare WebSocket writes the same frames back to back,
to show what the simulator's limiter (like Spotware's) does without a client throttle.

Numbers: wall time from the first request to the last reply, achieved requests/s, the most
requests the simulator saw in any rolling 1-s window on that connection (its own record,
heartbeats excluded, the application auth included), and REQUEST_FREQUENCY_EXCEEDED replies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.client import connect

from bench import world
from bench.stats import summary
from cmamd.connection.client import OpenApiConnection
from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2


async def _throttled(requests: int) -> dict[str, Any]:
    sim = await world.start_sim(1)
    described = sim.describe()
    conn = OpenApiConnection(
        sim.url, described["client_id"], described["client_secret"], name="bench-burst"
    )
    try:
        await conn.start(connect_attempts=3)
        (info,) = sim.connections
        waits: list[float] = []

        async def one() -> None:
            sent = time.monotonic()
            await conn.request(messages_pb2.ProtoOAVersionReq(), timeout=120)
            waits.append((time.monotonic() - sent) * 1000)

        started = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(requests)), return_exceptions=True)
        wall = time.monotonic() - started
        errors = [r for r in results if isinstance(r, BaseException)]
        return {
            "requests": requests,
            "ok": requests - len(errors),
            "errors": sorted({type(e).__name__ for e in errors}),
            "wall_s": round(wall, 3),
            "req_per_s": round(requests / wall, 1),
            "max_in_any_1s": sim.max_requests_in_any_window(info.conn_id),
            "rate_limit_rejections": sim.rate_limit_rejections,
            "throttled_waits": conn.stats["throttled_waits"],
            "request_ms": summary(waits, 1),
        }
    finally:
        await conn.close()
        await sim.stop()


async def _unthrottled(requests: int) -> dict[str, Any]:
    sim = await world.start_sim(1)
    described = sim.describe()
    try:
        async with connect(sim.url, compression=None, ping_interval=None) as ws:
            auth = messages_pb2.ProtoOAApplicationAuthReq(
                clientId=described["client_id"], clientSecret=described["client_secret"]
            )
            await ws.send(codec.encode(auth, "auth"))
            codec.decode(await ws.recv())  # type: ignore[arg-type]
            (info,) = sim.connections
            frames = [
                codec.encode(messages_pb2.ProtoOAVersionReq(), f"m{i}") for i in range(requests)
            ]
            started = time.monotonic()
            for frame in frames:
                await ws.send(frame)
            rejected = answered = 0
            while answered < requests:
                envelope = codec.decode(await ws.recv())  # type: ignore[arg-type]
                if envelope.client_msg_id is None:
                    continue  # heartbeat or event
                answered += 1
                message = envelope.message
                if isinstance(message, messages_pb2.ProtoOAErrorRes) and (
                    message.errorCode == "REQUEST_FREQUENCY_EXCEEDED"
                ):
                    rejected += 1
            wall = time.monotonic() - started
        return {
            "requests": requests,
            "ok": requests - rejected,
            "errors": ["REQUEST_FREQUENCY_EXCEEDED"] if rejected else [],
            "wall_s": round(wall, 3),
            "req_per_s": round(requests / wall, 1),
            "max_in_any_1s": sim.max_requests_in_any_window(info.conn_id),
            "rate_limit_rejections": sim.rate_limit_rejections,
        }
    finally:
        await sim.stop()


async def run(requests: int) -> dict[str, Any]:
    return {
        "max_rps": world.sim_config(1).max_rps,
        "throttled": await _throttled(requests),
        "unthrottled": await _unthrottled(requests),
    }

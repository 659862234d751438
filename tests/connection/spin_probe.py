"""Run in a child process by test_conn_closing.py: a connection whose server closes while
requests wait for a send slot must keep its event loop turning.

A spinning loop cannot be caught from inside (no timer fires), so the parent gives this
script a deadline and kills it. Exit 0: every request ended (reply or a typed error) and the
loop never stalled longer than the connection's own waits. Scenarios:

close  a server that sends a close frame right after a reply and then stops reading, so the
       client stays in the closing state (the closing handshake never completes)
stall  the client's event loop stalls longer than the server's idle timeout while a request
       is queued; the server (in its own thread) closes the idle connection meanwhile
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from cmamd.connection import Backoff, OpenApiConnection
from cmamd.protocol.codec import decode, encode
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.sim import SimConfig, SimServer

CLOSE_FRAME_1000 = b"\x88\x02\x03\xe8"  # unmasked server close frame, code 1000
REQUESTS = 6
MAX_RPS = 2


async def _close_after_reply_server(ready: asyncio.Future[str]) -> None:
    replies = 0

    async def handle(ws: ServerConnection) -> None:
        nonlocal replies
        async for frame in ws:
            assert isinstance(frame, bytes)
            envelope = decode(frame)
            message = envelope.message
            if isinstance(message, pb.ProtoOAApplicationAuthReq):
                await ws.send(encode(pb.ProtoOAApplicationAuthRes(), envelope.client_msg_id))
            elif isinstance(message, pb.ProtoOAVersionReq):
                await ws.send(encode(pb.ProtoOAVersionRes(version="1"), envelope.client_msg_id))
                replies += 1
                if replies == 1:
                    # The close frame goes out, the client's answer is never read: the
                    # client's socket stays "closing" until its own close timeout.
                    ws.transport.write(CLOSE_FRAME_1000)
                    ws.transport.pause_reading()
                    await asyncio.sleep(3600)

    async with serve(handle, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        ready.set_result(f"ws://127.0.0.1:{port}")
        await asyncio.Future()


def _sim_in_thread(idle_timeout_s: float) -> tuple[str, threading.Event]:
    """The simulator on its own loop in a thread, so a stall of ours does not stall it."""
    url: list[str] = []
    started, stop = threading.Event(), threading.Event()

    async def run() -> None:
        config = SimConfig.default().model_copy(
            update={"idle_timeout_s": idle_timeout_s, "heartbeat_interval_s": 60.0}
        )
        async with SimServer(config) as sim:
            url.append(sim.url)
            client = sim.describe()
            url.append(client["client_id"])
            url.append(client["client_secret"])
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    threading.Thread(target=lambda: asyncio.run(run()), daemon=True).start()
    if not started.wait(10):
        raise SystemExit("simulator did not start")
    return "\x00".join(url), stop


async def _ticker(gaps: list[float]) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def _send_all(conn: OpenApiConnection, count: int = REQUESTS) -> list[str]:
    async def one() -> str:
        try:
            await conn.request(pb.ProtoOAVersionReq())
            return "reply"
        except Exception as exc:  # any typed outcome ends the request: that is the point
            return type(exc).__name__

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.sleep(0)
    return await asyncio.gather(*tasks)


async def scenario_close() -> list[str]:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(_close_after_reply_server(ready))
    conn = OpenApiConnection(
        await ready,
        "id",
        "secret",
        max_rps=MAX_RPS,
        request_timeout_s=3.0,
        backoff=Backoff(0.05, 0.1),
    )
    await conn.start()
    try:
        # application auth took one slot: the first request goes, the second is the one
        # waiting for a slot when the close frame comes
        sent = await _send_all(conn, 2)
        return sent + await _send_all(conn, REQUESTS - 2)
    finally:
        await conn.close()
        server.cancel()


async def scenario_stall() -> list[str]:
    idle_timeout_s = 1.5
    packed, stop = _sim_in_thread(idle_timeout_s)
    url, client_id, client_secret = packed.split("\x00")
    conn = OpenApiConnection(
        url,
        client_id,
        client_secret,
        max_rps=MAX_RPS * 2,  # heartbeats count against it too
        request_timeout_s=4.0,
        heartbeat_interval_s=0.5,
        backoff=Backoff(0.05, 0.1),
    )
    await conn.start()
    try:
        queued = asyncio.create_task(_send_all(conn))
        for _ in range(5):
            await asyncio.sleep(0)  # some are sent, the others wait for a slot
        time.sleep(idle_timeout_s + 0.7)  # the stall: the server closes the idle link
        return await queued
    finally:
        await conn.close()
        stop.set()


async def main(name: str) -> int:
    gaps: list[float] = []
    ticker = asyncio.create_task(_ticker(gaps))
    scenario: dict[str, Any] = {"close": scenario_close, "stall": scenario_stall}
    outcomes = await asyncio.wait_for(scenario[name](), 20)
    ticker.cancel()
    print(f"outcomes={outcomes}")
    # the deliberate stall aside, the loop must keep turning
    if name == "stall" and gaps:
        gaps.remove(max(gaps))
    worst = max(gaps, default=0.0)
    print(f"worst_gap_s={worst:.3f} top={[round(g, 2) for g in sorted(gaps)[-3:]]}")
    if outcomes != ["reply"] * REQUESTS or worst > 1.0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))

"""Scenario "tradeburst": the master fires ``positions`` opens and their closes in one second.

The master trades from a raw WebSocket client (no throttle of its own) on a simulator
whose limit is raised for it (``--max-rps``; the daemon keeps its own 50/s throttle):
opens at i x (0.5 s / positions), each position's close 0.5 s after its open, so
2 x positions trades in one second, each copied to every follower. Checked from the
frames at the simulator's socket: every follower ends flat, no follower close precedes
that position's open, and the time from the first master fill to the last follower order
against the exact bound floor((n - 1) / 50) s for the n follower orders of the connection.
A position closed before its open was copied may be skipped as a whole (the queue
coalesces: nothing to copy by then): counted, not an error.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench import world
from bench.procs import DaemonProcess, SimProcess
from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

MAX_RPS = 50
FILLED = 3
SYMBOL_ID_OF = "EURUSD"
VOLUME = 1_000_000  # 0.10 lot of the demo broker's EURUSD (lot size 10 000 000)


async def _master_burst(described: dict[str, Any], positions: int) -> None:
    master = next(a for a in described["accounts"] if a["name"] == world.MASTER)
    ws = await connect(described["url"], compression=None, max_size=None)
    fills: dict[str, int] = {}
    requested: dict[int, str] = {}  # order id -> clientMsgId of the open
    done = asyncio.Event()

    async def ask(message: Any) -> Any:
        await ws.send(codec.encode(message, "setup"))
        while True:
            envelope = codec.decode(await ws.recv())  # type: ignore[arg-type]
            if envelope.client_msg_id == "setup":
                return envelope.message

    await ask(
        pb.ProtoOAApplicationAuthReq(
            clientId=described["client_id"], clientSecret=described["client_secret"]
        )
    )
    account_id = master["account_id"]
    await ask(
        pb.ProtoOAAccountAuthReq(ctidTraderAccountId=account_id, accessToken=master["access_token"])
    )
    symbols = await ask(pb.ProtoOASymbolsListReq(ctidTraderAccountId=account_id))
    symbol_id = next(s.symbolId for s in symbols.symbol if s.symbolName == SYMBOL_ID_OF)
    closed = 0

    async def read() -> None:
        nonlocal closed
        async for frame in ws:
            envelope = codec.decode(frame)  # type: ignore[arg-type]
            event = envelope.message
            if not isinstance(event, pb.ProtoOAExecutionEvent):
                continue
            if envelope.client_msg_id:  # the first reply to an order names the request
                requested[event.order.orderId] = envelope.client_msg_id
            if event.executionType != FILLED:
                continue
            if event.order.closingOrder:
                closed += 1
                if closed == positions:
                    done.set()
            elif event.order.orderId in requested:
                fills[requested[event.order.orderId]] = event.position.positionId

    reader = asyncio.create_task(read())
    step = 0.5 / positions
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(2 * positions):
        await asyncio.sleep(max(0.0, start + i * step - loop.time()))
        if i < positions:
            await ws.send(
                codec.encode(
                    pb.ProtoOANewOrderReq(
                        ctidTraderAccountId=account_id,
                        symbolId=symbol_id,
                        orderType=model_pb2.MARKET,
                        tradeSide=model_pb2.BUY,
                        volume=VOLUME,
                    ),
                    f"open-{i}",
                )
            )
        else:
            position = fills.get(f"open-{i - positions}")
            if position is None:
                raise RuntimeError("the master's open was not filled within 0.5 s")
            await ws.send(
                codec.encode(
                    pb.ProtoOAClosePositionReq(
                        ctidTraderAccountId=account_id, positionId=position, volume=VOLUME
                    )
                )
            )
    await asyncio.wait_for(done.wait(), 30)
    reader.cancel()
    await ws.close()


async def run(followers: int, positions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cmamd-bench-tburst-") as tmp_name:
        tmp = Path(tmp_name)
        frames_path = tmp / "frames.json"
        sim = await SimProcess.start(followers, tmp, frames=frames_path, max_rps=100_000)
        described = sim.described
        try:
            config = world.write_config(
                tmp / "config.yaml",
                world.daemon_config(
                    described, described["port"], tmp / "state", tmp / "client_secret", followers
                ),
            )
            daemon = DaemonProcess(config, tmp / "daemon.log")
            await daemon.start(timeout=300)
            await asyncio.sleep(1.3)  # start-up's requests age out of the budget window
            await _master_burst(described, positions)
            # until the copies are through: the bound plus slack
            await asyncio.sleep(math.floor(4 * positions * followers / MAX_RPS) * 1.1 + 3)
            status = daemon.last_status()
            await daemon.stop()
        finally:
            await sim.stop()
        frames = json.loads(frames_path.read_text())["frames"]
    master_id = next(a["account_id"] for a in described["accounts"] if a["name"] == world.MASTER)
    return analyse(frames, master_id, followers, positions, status)


def analyse(
    frames: list[dict[str, Any]], master_id: int, followers: int, positions: int, status: str
) -> dict[str, Any]:
    daemon_conns = {
        f["conn"] for f in frames if f["kind"] == "new" and f["label"].startswith("cm:")
    }
    first_fill = min(
        f["at"]
        for f in frames
        if f["kind"] == "exec" and f["account"] == master_id and f["type"] == FILLED
    )
    label_of: dict[tuple[int, int], str] = {}  # (follower, follower position) -> label
    net: dict[int, int] = {}
    for f in frames:
        if f["kind"] == "exec" and f["type"] == FILLED and f["account"] != master_id:
            if f["conn"] not in daemon_conns or not f["label"].startswith("cm:"):
                continue
            label_of[(f["account"], f["position"])] = f["label"]
            net[f["account"]] = net.get(f["account"], 0) + (-1 if f["closing"] else 1)
    opened_at: dict[tuple[int, str], float] = {}
    out_of_order = 0
    orders: list[float] = []
    opens = closes = 0
    for f in frames:
        if f["dir"] != "in" or f["conn"] not in daemon_conns or f["account"] == master_id:
            continue
        if f["kind"] == "new":
            opens += 1
            opened_at.setdefault((f["account"], f["label"]), f["at"])
            orders.append(f["at"])
        elif f["kind"] == "close":
            closes += 1
            orders.append(f["at"])
            label = label_of.get((f["account"], f["position"]))
            if label is None or opened_at.get((f["account"], label), math.inf) > f["at"]:
                out_of_order += 1
    total_s = max(orders) - first_fill if orders else None
    bound_s = math.floor((len(orders) - 1) / MAX_RPS) if orders else None
    return {
        "followers": followers,
        "master_trades": 2 * positions,
        "follower_orders": len(orders),
        "opens": opens,
        "closes": closes,
        "positions_skipped_whole": positions * followers - opens,
        "followers_not_flat": sum(1 for v in net.values() if v != 0),
        "closes_before_their_open": out_of_order,
        "total_s": round(total_s, 3) if total_s is not None else None,
        "exact_bound_s": bound_s,
        "vs_bound": round(total_s / bound_s, 4) if total_s and bound_s else None,
        "status": status,
    }

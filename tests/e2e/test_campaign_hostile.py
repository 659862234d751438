"""The hostile-server campaign: a corrupting proxy between the daemon and the simulator.

Each fault (truncated, random, oversized, unknown-type and text frames; absurd values in
forged execution events; replayed fills; wrong reply types; floods; a close frame right
after a fill) is followed by a canary master trade, which must be copied exactly and
closed again, with no other order reaching a follower. One summary line, e.g.
``hostile campaign seed=... scenarios=13 faults=13: 0 crashes, 0 hangs, 0 wrong orders``.

CI runs every scenario once; ``--full-campaigns`` runs several rounds in a seeded random
order with bigger floods. ``CMAMD_HOSTILE_SEED`` replays a given seed.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from polling import reached

from cmamd.protocol import codec
from cmamd.protocol.proto import common_pb2, messages_pb2, model_pb2
from cmamd.replication.labels import label
from cmamd.sim import SimServer

from .hostile_proxy import Frame, HostileProxy
from .kit import InProcessDaemon, daemon_config, write_yaml

SEED = int(os.environ.get("CMAMD_HOSTILE_SEED", "20261127"))
FOLLOWERS = {"follower-hedged": ("EURUSD", 1), "follower-suffix": ("EURUSD.m", 2)}
RULES = [
    {
        "name": "canary",
        "source": "master",
        "destinations": [
            {"account": "follower-hedged", "volume": {"mode": "multiplier", "value": 1}},
            {
                "account": "follower-suffix",
                "volume": {"mode": "multiplier", "value": 2},
                "symbols": {"add_suffix": ".m"},
            },
        ],
    }
]
TRADING_REQUESTS = {
    "ProtoOANewOrderReq",
    "ProtoOAClosePositionReq",
    "ProtoOAAmendPositionSLTPReq",
    "ProtoOAAmendOrderReq",
    "ProtoOACancelOrderReq",
}
SAFETY_NETS = {
    "replication step failed",
    "listener failed",
    "change listener failed",
    "session hook failed",
}
CANARY_TIMEOUT_S = 45.0  # above the reconnect backoff cap (30 s) a flapping server causes
EXECUTION_EVENT = codec.payload_type_of(messages_pb2.ProtoOAExecutionEvent)


@dataclass
class Campaign:
    sim: SimServer
    proxy: HostileProxy
    daemon: InProcessDaemon
    ids: dict[str, int]
    rng: random.Random
    full: bool
    caplog: pytest.LogCaptureFixture
    capsys: pytest.CaptureFixture[str]
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    wrong_orders: list[str] = field(default_factory=list)
    faults: int = 0
    canaries: int = 0
    log_lines: int = 0
    forged_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def master(self) -> int:
        return self.ids["master"]

    # the canary ----------------------------------------------------------------------------
    async def canary(self, scenario: str, since: int, timeout: float = CANARY_TIMEOUT_S) -> bool:
        """Open and close a master trade; True when both were copied exactly, and only they."""
        self.canaries += 1
        side = self.rng.choice(["buy", "sell"])
        volume = 100_000 * self.rng.randint(1, 5)
        position = self.sim.place_market_order(self.master, "EURUSD", side, volume)
        text = label(self.master, f"p{position}")

        def copies() -> dict[str, list[Any]]:
            return {
                name: [p for p in self.sim.broker.positions(self.ids[name]) if p.label == text]
                for name in FOLLOWERS
            }

        def copied() -> bool:
            return all(
                len(found) == 1 and found[0].volume == volume * FOLLOWERS[name][1]
                for name, found in copies().items()
            )

        if not await reached(copied, timeout, 0.02):
            self.hangs.append(f"{scenario}: canary p{position} not copied: {copies()}")
            return False
        copy_ids = {name: found[0].position_id for name, found in copies().items()}
        self.sim.close_position(self.master, position)
        if not await reached(lambda: not any(copies().values()), CANARY_TIMEOUT_S, 0.02):
            self.hangs.append(f"{scenario}: canary p{position} not closed: {copies()}")
            return False
        await self.daemon.settle(quiet_s=0.2)
        self._check_orders(scenario, since, text, side, volume, copy_ids)
        return True

    def _check_orders(
        self,
        scenario: str,
        since: int,
        text: str,
        side: str,
        volume: int,
        copy_ids: dict[str, int],
    ) -> None:
        for name, (_symbol, factor) in FOLLOWERS.items():
            account = self.ids[name]
            sent = [
                r
                for r in self.sim.record[since:]
                if r.name in TRADING_REQUESTS
                and getattr(r.message, "ctidTraderAccountId", None) == account
            ]
            expected_open = [
                r
                for r in sent
                if isinstance(r.message, messages_pb2.ProtoOANewOrderReq)
                and r.message.label == text
                and r.message.volume == volume * factor
                and r.message.tradeSide == (model_pb2.BUY if side == "buy" else model_pb2.SELL)
            ]
            expected_close = [
                r
                for r in sent
                if isinstance(r.message, messages_pb2.ProtoOAClosePositionReq)
                and r.message.positionId == copy_ids[name]
                and r.message.volume == volume * factor
            ]
            if len(expected_open) != 1 or len(expected_close) != 1 or len(sent) != 2:
                shown = [(r.name, _short(r.message)) for r in sent]
                self.wrong_orders.append(f"{scenario}: {name} received {shown}")

    # crash detection -----------------------------------------------------------------------
    def collect_logs(self, scenario: str) -> None:
        for record in self.caplog.records:
            self.log_lines += 1
            event = record.msg if isinstance(record.msg, dict) else {"event": str(record.msg)}
            if event.get("event") in SAFETY_NETS or record.exc_info or "exception" in event:
                self.crashes.append(
                    f"{scenario}: {event.get('event')}: {event.get('exception') or record.exc_info}"
                )
        self.caplog.clear()
        task = self.daemon.task
        if task is not None and task.done():
            self.crashes.append(f"{scenario}: the daemon exited ({task.result()!r})")

    # forged frames ---------------------------------------------------------------------------
    def fresh_id(self) -> int:
        return 900_000_000 + next(self.forged_ids)

    def forged_fill(self, account: str = "master", **position: Any) -> bytes:
        """An ORDER_FILLED event of ``account`` for a new position with the given fields
        (a follower's is labelled as a copy of a master position)."""
        pid = position.pop("positionId", self.fresh_id())
        volume = position.pop("volume", 100_000)
        symbol_id = position.pop("symbolId", self.symbol_id(account, "EURUSD"))
        text = "" if account == "master" else label(self.master, f"p{self.fresh_id()}")
        pos = model_pb2.ProtoOAPosition(
            positionId=pid,
            tradeData=model_pb2.ProtoOATradeData(
                symbolId=symbol_id,
                volume=volume,
                tradeSide=model_pb2.BUY,
                openTimestamp=int(time.time() * 1000),
                label=text,
            ),
            positionStatus=model_pb2.POSITION_STATUS_OPEN,
            swap=0,
            price=position.pop("price", 1.08),
            utcLastUpdateTimestamp=position.pop("utcLastUpdateTimestamp", int(time.time() * 1000)),
            **position,
        )
        order = model_pb2.ProtoOAOrder(
            orderId=self.fresh_id(),
            tradeData=pos.tradeData,
            orderType=model_pb2.MARKET,
            orderStatus=model_pb2.ORDER_STATUS_FILLED,
            positionId=pid,
        )
        event = messages_pb2.ProtoOAExecutionEvent(
            ctidTraderAccountId=self.ids[account],
            executionType=model_pb2.ORDER_FILLED,
            position=pos,
            order=order,
        )
        return codec.encode(event)

    def symbol_id(self, account: str, name: str) -> int:
        daemon = self.daemon.daemon
        assert daemon is not None
        session = daemon.sessions[account]
        spec = session.symbol(name if account != "follower-suffix" else f"{name}.m")
        assert spec is not None
        return spec.symbol_id


def _short(message: Any) -> str:
    text = str(message).replace("\n", " ")
    return text[:160]


# scenarios ---------------------------------------------------------------------------------
Scenario = Callable[[Campaign], Awaitable[None]]


def _random_bytes(rng: random.Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


async def truncated_frames(c: Campaign) -> None:
    seen = [raw for _kind, raw in c.proxy.seen if len(raw) > 4] or [c.forged_fill()]
    frames: list[Frame] = []
    for _ in range(50 if not c.full else 500):
        raw = c.rng.choice(seen)
        frames.append(raw[: c.rng.randint(1, len(raw) - 1)])
    await c.proxy.inject(frames)


async def random_frames(c: Campaign) -> None:
    count = 200 if not c.full else 2_000
    await c.proxy.inject([_random_bytes(c.rng, 1, 300) for _ in range(count)])


async def unknown_type_frames(c: Campaign) -> None:
    frames: list[Frame] = []
    for _ in range(100 if not c.full else 1_000):
        envelope = common_pb2.ProtoMessage(
            payloadType=c.rng.choice([1, 999, 2099, 2199, 40_000, 65_535]),
            payload=_random_bytes(c.rng, 0, 100),
        )
        frames.append(envelope.SerializeToString())
    await c.proxy.inject(frames)


async def text_frames(c: Campaign) -> None:
    frames: list[Frame] = ['{"payloadType": 2126, "payload": {}}', "", "\x00" * 10, "ping"]
    await c.proxy.inject(frames * (10 if not c.full else 100))


async def oversized_frame(c: Campaign) -> None:
    # above the client's max frame size: the client closes the link and reconnects
    await c.proxy.inject([b"\x08\x33" + bytes(codec.MAX_FRAME_BYTES + 1000)])


async def absurd_values(c: Campaign) -> None:
    forged = [
        c.forged_fill(volume=2**62),
        c.forged_fill(volume=-1_000_000),
        c.forged_fill(price=math.nan),
        c.forged_fill(price=math.inf),
        c.forged_fill(stopLoss=math.nan),
        c.forged_fill(takeProfit=-math.inf),
        c.forged_fill(positionId=-c.fresh_id()),
        c.forged_fill(symbolId=987_654),
        c.forged_fill(utcLastUpdateTimestamp=2**62),
        c.forged_fill("follower-hedged", stopLoss=math.nan),  # a "copy" to close or adopt
        c.forged_fill("follower-suffix", volume=2**62),
        c.forged_fill("follower-hedged", positionId=-c.fresh_id()),
    ]
    await c.proxy.inject(forged * (1 if not c.full else 5))


async def replayed_fills(c: Campaign) -> None:
    """Old fills again, out of order: opens of positions closed since, on every account."""
    events = c.proxy.recorded(EXECUTION_EVENT)
    opens = [raw for raw in events if _opens_a_position(raw)]
    replay = c.rng.sample(opens, min(len(opens), 20)) + c.rng.sample(events, min(len(events), 20))
    c.rng.shuffle(replay)
    await c.proxy.inject(replay)


def _opens_a_position(raw: bytes) -> bool:
    envelope = common_pb2.ProtoMessage()
    envelope.ParseFromString(raw)
    event = messages_pb2.ProtoOAExecutionEvent()
    event.ParseFromString(envelope.payload)
    return (
        event.executionType == model_pb2.ORDER_FILLED
        and event.position.positionStatus == model_pb2.POSITION_STATUS_OPEN
    )


async def wrong_reply_to_an_order(c: Campaign) -> None:
    c.proxy.wrong_reply_to_next(
        messages_pb2.ProtoOANewOrderReq, messages_pb2.ProtoOAVersionRes(version="hostile")
    )


async def wrong_reply_to_a_close(c: Campaign) -> None:
    reply = messages_pb2.ProtoOAVersionRes(version="hostile")
    c.proxy.wrong_reply_to_next(messages_pb2.ProtoOAClosePositionReq, reply)  # the canary's


async def wrong_reply_to_a_reconcile(c: Campaign) -> None:
    reply = messages_pb2.ProtoOASymbolsListRes(ctidTraderAccountId=c.master)
    c.proxy.wrong_reply_to_next(messages_pb2.ProtoOAReconcileReq, reply)
    await c.proxy.drop_all()  # the reconnect reconciles every account


async def flood(c: Campaign) -> None:
    count = 3_000 if not c.full else 30_000
    heartbeat = codec.encode(common_pb2.ProtoHeartbeatEvent())
    garbage = [
        heartbeat,
        b"\xff",
        b"\x08",
        codec.encode(messages_pb2.ProtoOAVersionRes(version="hostile")),
    ]
    await c.proxy.inject([c.rng.choice(garbage) for _ in range(count)], pace_every=500)


async def close_right_after_a_fill(c: Campaign) -> None:
    c.proxy.close_after_next_fill(c.master)  # the canary's own fill


SCENARIOS: dict[str, Scenario] = {
    "truncated frames": truncated_frames,
    "random frames": random_frames,
    "unknown payload types": unknown_type_frames,
    "text frames": text_frames,
    "oversized frame": oversized_frame,
    "absurd values": absurd_values,
    "replayed fills": replayed_fills,
    "wrong reply to an order": wrong_reply_to_an_order,
    "wrong reply to a close": wrong_reply_to_a_close,
    "wrong reply to a reconcile": wrong_reply_to_a_reconcile,
    "flood": flood,
    "close right after a fill": close_right_after_a_fill,
}


# running -----------------------------------------------------------------------------------
@pytest.fixture
async def proxy(sim: SimServer) -> AsyncIterator[HostileProxy]:
    hostile = HostileProxy(sim.url, random.Random(SEED))
    await hostile.start()
    yield hostile
    await hostile.stop()


def proxied_config(sim: SimServer, proxy: HostileProxy, tmp_path: Path) -> Path:
    data = daemon_config(
        sim,
        tmp_path / "state",
        tmp_path / "client_secret",
        ["master", *FOLLOWERS],
        RULES,
        api={"port": proxy.port},
        logging={"format": "json"},
    )
    return write_yaml(tmp_path / "config.yaml", data)


@pytest.mark.timeout(900)  # the full campaign; the short one takes well under a minute
async def test_hostile_campaign(
    sim: SimServer,
    proxy: HostileProxy,
    ids: dict[str, int],
    daemons: Any,
    tmp_path: Path,
    full_campaigns: bool,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = random.Random(SEED)
    daemon = daemons(proxied_config(sim, proxy, tmp_path))
    await daemon.start()
    await daemon.settle()
    campaign = Campaign(sim, proxy, daemon, ids, rng, full_campaigns, caplog, capsys)
    names = list(SCENARIOS)
    rounds = 4 if full_campaigns else 1
    plan = [name for _ in range(rounds) for name in rng.sample(names, len(names))]
    if not full_campaigns:
        plan = names  # every scenario once, in a fixed order
    if os.environ.get("CMAMD_HOSTILE_ONLY"):  # reproduce one scenario: its name, repeated
        plan = [os.environ["CMAMD_HOSTILE_ONLY"]] * (rounds * 3)
    started = time.monotonic()
    first_connections = proxy.connections
    for _ in range(3):  # history to replay
        assert await campaign.canary("warm-up", len(sim.record))
    for name in plan:
        since = len(sim.record)
        await SCENARIOS[name](campaign)
        campaign.faults += 1
        ok = await campaign.canary(name, since)
        campaign.collect_logs(name)
        if not ok:
            break  # a hung daemon makes every later canary fail for the same reason
    reconnects = proxy.connections - first_connections
    summary = (
        f"hostile campaign seed={SEED} scenarios={len(plan)} faults={campaign.faults} "
        f"fired={proxy.faults_fired} canaries={campaign.canaries} reconnects={reconnects} "
        f"log_lines={campaign.log_lines} in {time.monotonic() - started:.1f} s: "
        f"{len(campaign.crashes)} crashes, {len(campaign.hangs)} hangs, "
        f"{len(campaign.wrong_orders)} wrong orders"
    )
    with capsys.disabled():
        print("\n" + summary)
        for problem in campaign.crashes + campaign.hangs + campaign.wrong_orders:
            print("  " + problem)
    assert (campaign.crashes, campaign.hangs, campaign.wrong_orders) == ([], [], []), summary


async def test_hostile_wrong_reply_during_account_start_up(
    sim: SimServer,
    proxy: HostileProxy,
    ids: dict[str, int],
    daemons: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reply of an unexpected type while an account starts must not leave it stuck."""
    reply = messages_pb2.ProtoOASymbolsListRes(ctidTraderAccountId=ids["master"])
    proxy.wrong_reply_to_next(messages_pb2.ProtoOAReconcileReq, reply)
    daemon = daemons(proxied_config(sim, proxy, tmp_path))
    await daemon.start()
    campaign = Campaign(sim, proxy, daemon, ids, random.Random(SEED), False, caplog, capsys)
    ok = await campaign.canary("wrong reply during start-up", len(sim.record), timeout=8)
    statuses = {name: s.status for name, s in daemon.daemon.sessions.items()}
    assert ok, (campaign.hangs, statuses)

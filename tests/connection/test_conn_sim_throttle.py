"""The request budget as the simulator sees it: bursts within max_rps, retryAfter honoured."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Iterator

import pytest

from cmamd.connection import OpenApiConnection, Priority
from cmamd.protocol.errors import RateLimited
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.sim import SimConfig, SimServer


class ScaledClock:
    """Real time running ``factor`` times faster, shared by client and simulator.

    Both sides measure the same (scaled) seconds, so the simulator's one-second rate window
    passes in 1/factor real seconds; socket latency is scaled up by the same factor, which
    makes the check harsher, not laxer.
    """

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._origin = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._origin) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.factor)


@pytest.fixture
def no_gc_pause() -> Iterator[None]:
    """Server and client share this process and its clock: a full garbage collection in
    the middle of the burst (likelier late in a long suite) holds back the server's reads
    and packs frames written a second apart into one of its windows."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_gc_pause")
async def test_a_500_request_burst_stays_within_the_servers_limit() -> None:
    clock = ScaledClock(3.0)
    async with SimServer(SimConfig.default(), monotonic=clock.monotonic, sleep=clock.sleep) as sim:
        described = sim.describe()
        conn = OpenApiConnection(
            sim.url, described["client_id"], described["client_secret"], name="burst", clock=clock
        )
        try:
            await conn.start()
            accounts = described["accounts"]
            for acc in accounts:
                await conn.request(
                    pb.ProtoOAAccountAuthReq(
                        ctidTraderAccountId=acc["account_id"], accessToken=acc["access_token"]
                    ),
                    priority=Priority.SESSION,
                )
            rng = random.Random(11)
            burst = [
                pb.ProtoOATraderReq(ctidTraderAccountId=rng.choice(accounts)["account_id"])
                if rng.random() < 0.5
                else pb.ProtoOAVersionReq()
                for _ in range(500)
            ]
            # Client and simulator share this process: a full garbage collection in the
            # middle (its length depends on what the whole test session has allocated)
            # would stamp frames written before it together with those written after, as
            # no network does. Collect up front and keep the collector out of the burst.
            gc.collect()
            gc.disable()
            try:
                replies = await asyncio.gather(
                    *(
                        conn.request(message, priority=rng.choice(list(Priority)), timeout=60)
                        for message in burst
                    )
                )
            finally:
                gc.enable()
        finally:
            await conn.close()
    assert all(isinstance(r, pb.ProtoOATraderRes | pb.ProtoOAVersionRes) for r in replies)
    conn_id = sim.connections[0].conn_id
    requests = [r for r in sim.record if r.conn_id == conn_id and r.name != "ProtoHeartbeatEvent"]
    assert len(requests) == 1 + len(accounts) + 500  # nothing resent
    assert sim.rate_limit_rejections == 0
    assert sim.max_requests_in_any_window(conn_id) <= 50
    assert sim.max_requests_in_any_window(conn_id) >= 40  # and the budget was actually used
    assert conn.stats["throttled_waits"] >= 400


async def test_the_servers_retry_after_is_honoured() -> None:
    # A server stricter than the client's budget: the excess is refused with retryAfter=1.
    async with SimServer(SimConfig.default(max_rps=5)) as sim:
        described = sim.describe()
        conn = OpenApiConnection(sim.url, described["client_id"], described["client_secret"])
        try:
            await conn.start()
            replies = await asyncio.gather(
                *(conn.request(pb.ProtoOAVersionReq()) for _ in range(8))
            )
            stats = conn.stats
        finally:
            await conn.close()
    assert all(isinstance(r, pb.ProtoOAVersionRes) for r in replies)
    # The application auth used one of the 5 slots: 4 went through, 4 were refused.
    assert sim.rate_limit_rejections == 4
    assert stats["rate_limited"] == 4
    versions = [r for r in sim.record if r.name == "ProtoOAVersionReq"]
    assert len(versions) == 12
    first_refused_at = versions[4].at
    assert all(r.at >= first_refused_at + 1.0 for r in versions[8:])
    assert len({r.client_msg_id for r in versions}) == 12


async def test_refused_more_often_than_allowed_gives_up_with_rate_limited() -> None:
    async with SimServer(SimConfig.default(max_rps=1)) as sim:
        described = sim.describe()
        conn = OpenApiConnection(
            sim.url, described["client_id"], described["client_secret"], rate_limit_attempts=1
        )
        try:
            await conn.start()
            with pytest.raises(RateLimited) as refused:
                await conn.request(pb.ProtoOAVersionReq())
        finally:
            await conn.close()
    assert refused.value.code == "REQUEST_FREQUENCY_EXCEEDED"
    assert refused.value.retry_after_s == 1.0
    assert len([r for r in sim.record if r.name == "ProtoOAVersionReq"]) == 1

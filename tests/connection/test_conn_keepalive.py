"""keep_alive on a virtual clock: heartbeat pacing, liveness probes, silence detection."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import pytest
import structlog
from websockets.asyncio.client import ClientConnection

from cmamd.connection.keepalive import keep_alive
from cmamd.connection.open_socket import OpenSocket

from .conn_fakes import VirtualClock

LOG = structlog.get_logger("test")


def idle_link(clock: VirtualClock) -> OpenSocket:
    # keep_alive only reads the bookkeeping fields; the socket is never touched.
    socket = cast(ClientConnection, object())
    return OpenSocket(socket, 1, opened_at=clock.now, last_sent=clock.now, last_received=clock.now)


async def test_idle_link_gets_heartbeats_well_within_the_interval(
    virtual_clock: VirtualClock,
) -> None:
    link = idle_link(virtual_clock)
    beats: list[float] = []

    async def heartbeat(target: OpenSocket) -> bool:
        beats.append(virtual_clock.now)
        target.last_sent = virtual_clock.now
        return True

    async def answered_probe() -> None:
        link.last_received = virtual_clock.now

    watchdog = asyncio.create_task(
        keep_alive(
            link,
            clock=virtual_clock,
            heartbeat_interval_s=10.0,
            silence_timeout_s=30.0,
            send_heartbeat=heartbeat,
            probe=answered_probe,
            log=LOG,
        )
    )
    start = virtual_clock.now
    while virtual_clock.now < start + 120:
        await asyncio.sleep(0)
    assert not watchdog.done()  # probes were answered: the link stays
    watchdog.cancel()
    gaps = [b - a for a, b in itertools.pairwise([start, *beats])]
    assert len(beats) >= 20
    assert max(gaps) < 10.0 - 1.0


async def test_a_stuck_heartbeat_does_not_hide_a_dead_link(virtual_clock: VirtualClock) -> None:
    link = idle_link(virtual_clock)
    probes: list[float] = []
    never: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def stuck_heartbeat(target: OpenSocket) -> bool:
        return await never  # a send blocked behind a full socket buffer

    async def unanswered_probe() -> None:
        probes.append(virtual_clock.now)

    start = virtual_clock.now
    watchdog = keep_alive(
        link,
        clock=virtual_clock,
        heartbeat_interval_s=10.0,
        silence_timeout_s=30.0,
        send_heartbeat=stuck_heartbeat,
        probe=unanswered_probe,
        log=LOG,
    )
    await asyncio.wait_for(watchdog, timeout=5)  # real seconds: virtual time runs far faster
    assert virtual_clock.now - start >= 30.0
    assert virtual_clock.now - start < 30.0 + 5.0
    assert probes == [pytest.approx(start + 15.0)]  # one probe, at half the silence timeout


async def test_a_heartbeat_finding_the_link_closed_ends_it(virtual_clock: VirtualClock) -> None:
    link = idle_link(virtual_clock)

    async def closed(target: OpenSocket) -> bool:
        return False

    async def no_probe() -> None:
        return None

    start = virtual_clock.now
    await keep_alive(
        link,
        clock=virtual_clock,
        heartbeat_interval_s=4.0,
        silence_timeout_s=30.0,
        send_heartbeat=closed,
        probe=no_probe,
        log=LOG,
    )
    assert virtual_clock.now - start < 4.0


async def test_traffic_postpones_heartbeats_and_probes(virtual_clock: VirtualClock) -> None:
    link = idle_link(virtual_clock)
    calls: list[str] = []

    async def heartbeat(target: OpenSocket) -> bool:
        calls.append("heartbeat")
        return True

    async def probe() -> None:
        calls.append("probe")

    options: dict[str, Any] = {
        "clock": virtual_clock,
        "heartbeat_interval_s": 10.0,
        "silence_timeout_s": 30.0,
        "send_heartbeat": heartbeat,
        "probe": probe,
        "log": LOG,
    }
    watchdog = asyncio.create_task(keep_alive(link, **options))
    start = virtual_clock.now
    while virtual_clock.now < start + 60:
        await virtual_clock.sleep(1.0)  # busy link: a request out and a reply in every second
        link.last_sent = link.last_received = virtual_clock.now
    watchdog.cancel()
    assert calls == []

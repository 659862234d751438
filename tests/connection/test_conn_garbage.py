"""Bad frames cost bounded log lines, and a burst of them ends the link (issue 8.6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog

from cmamd.connection import OpenApiConnection
from cmamd.log_limits import LimitedLog
from cmamd.protocol.proto import messages_pb2 as pb

from .conn_fakes import FakeOpenApi, eventually, quick_connection


@pytest.fixture
async def conn(fake_server: FakeOpenApi) -> AsyncIterator[OpenApiConnection]:
    connection = quick_connection(fake_server.url, name="garbage-test")
    yield connection
    await connection.close()


async def test_a_trickle_of_bad_frames_is_logged_once_per_interval(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    await conn.start()
    with structlog.testing.capture_logs() as logs:
        for _ in range(9):  # 18 frames: below the burst threshold (20 in a second)
            await fake_server.push(b"\xff\x00garbage")
            await fake_server.push("text")
        await eventually(lambda: conn.stats["bad_frames"] == 18)
    lines = [e for e in logs if "frame ignored" in e["event"]]
    assert len(lines) == 2, lines  # one per kind; the rest are counted for the summary
    assert conn.stats["reconnects"] == 0
    reply = await conn.request(pb.ProtoOAVersionReq())
    assert isinstance(reply, pb.ProtoOAVersionRes)


async def test_a_burst_of_garbage_drops_the_link_and_reconnects(
    fake_server: FakeOpenApi, conn: OpenApiConnection
) -> None:
    await conn.start()
    with structlog.testing.capture_logs() as logs:
        for _ in range(500):
            await fake_server.push(b"\xff\x00garbage")
        await eventually(lambda: conn.stats["reconnects"] == 1 and conn.is_ready)
    assert sum(1 for e in logs if e["event"] == "undecodable frame ignored") == 1
    assert any(e["event"].startswith("burst of undecodable frames") for e in logs)
    assert conn.stats["bad_frames"] < 500, "the rest died with the link"
    reply = await conn.request(pb.ProtoOAVersionReq())
    assert isinstance(reply, pb.ProtoOAVersionRes)


async def test_the_limiter_summarises_with_the_count_when_the_interval_ends() -> None:
    now = [0.0]
    with structlog.testing.capture_logs() as logs:
        limited = LimitedLog(structlog.get_logger("t"), interval_s=10, clock=lambda: now[0])
        for i in range(1000):
            limited.warning("undecodable frame ignored", bytes=i)
        limited.warning("another kind")
        now[0] = 10.5
        limited.warning("undecodable frame ignored", bytes=0)
    assert [(e["event"], e.get("repeated")) for e in logs] == [
        ("undecodable frame ignored", None),
        ("another kind", None),
        ("undecodable frame ignored", 999),
        ("undecodable frame ignored", None),
    ]


async def test_the_summary_comes_on_time_without_another_line() -> None:
    with structlog.testing.capture_logs() as logs:
        limited = LimitedLog(structlog.get_logger("t"), interval_s=0.05)
        for _ in range(3):
            limited.error("listener failed")
        await asyncio.sleep(0.15)
    assert [(e["event"], e.get("repeated")) for e in logs] == [
        ("listener failed", None),
        ("listener failed", 2),
    ]

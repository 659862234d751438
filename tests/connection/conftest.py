"""Fixtures of the connection tests (helpers live in conn_fakes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cmamd.sim import SimConfig, SimServer

from .conn_fakes import FakeOpenApi, VirtualClock


@pytest.fixture
async def virtual_clock() -> AsyncIterator[VirtualClock]:
    clock = VirtualClock()
    driver = asyncio.create_task(clock.drive())
    yield clock
    driver.cancel()
    await asyncio.gather(driver, return_exceptions=True)


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeOpenApi]:
    server = FakeOpenApi()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SimConfig.default()) as server:
        yield server

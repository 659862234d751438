"""Fixtures for the simulator tests: a server on a free loopback port, raw clients to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cmamd.sim import SimConfig, SimServer

from .simkit import Connect, RawClient


@pytest.fixture
def config() -> SimConfig:
    return SimConfig.default()


@pytest.fixture
async def server(config: SimConfig) -> AsyncIterator[SimServer]:
    async with SimServer(config) as sim:
        yield sim


@pytest.fixture
async def open_client(server: SimServer) -> AsyncIterator[Connect]:
    """Factory of raw clients to ``server``, closed at teardown."""
    clients: list[RawClient] = []

    async def open_one(url: str | None = None, **kwargs: Any) -> RawClient:
        client = await RawClient.open(url or server.url, **kwargs)
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        await client.close()

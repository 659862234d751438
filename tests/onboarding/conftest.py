from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ports import free_port

from cmamd.sim import SimConfig, SimServer


@pytest.fixture
def redirect_uri() -> str:
    return f"http://127.0.0.1:{free_port()}/callback"


@pytest.fixture
async def sim(redirect_uri: str) -> AsyncIterator[SimServer]:
    config = SimConfig.default(redirect_uris=[redirect_uri], grant_ctid="followers")
    async with SimServer(config) as server:
        yield server

"""ConnectionPool with a fake connection factory: slots, sharing, retries, release."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cmamd.config.models import ApiConfig
from cmamd.connection.client import OpenApiConnection
from cmamd.daemon.pool import ConnectionPool
from cmamd.protocol.errors import OpenApiError


class FakeConnection:
    def __init__(
        self, factory: FakeFactory, url: str, client_id: str, secret: str, **kw: Any
    ) -> None:
        self.factory = factory
        self.url, self.client_id, self.secret = url, client_id, secret
        self.kw = kw
        self.name: str = kw["name"]
        self.starts = 0
        self.closed = 0
        self.state = "new"

    async def start(self, *, connect_attempts: int | None = None) -> None:
        self.starts += 1
        self.connect_attempts = connect_attempts
        await self.factory.gate.wait()
        if self.factory.refusals:
            self.factory.refusals -= 1
            self.state = "closed"
            raise OpenApiError("CH_CLIENT_AUTH_FAILURE", "client secret refused")
        self.state = "ready"

    async def close(self) -> None:
        self.closed += 1


class FakeFactory:
    def __init__(self) -> None:
        self.made: list[FakeConnection] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.refusals = 0

    def __call__(self, url: str, client_id: str, secret: str, **kw: Any) -> FakeConnection:
        conn = FakeConnection(self, url, client_id, secret, **kw)
        self.made.append(conn)
        return conn


def fake(conn: OpenApiConnection) -> FakeConnection:
    """The pool's connection, which the factory made as a fake."""
    assert isinstance(conn, FakeConnection)
    return conn


def api(demo: int = 1, live: int = 1) -> ApiConfig:
    return ApiConfig.model_validate(
        {
            "client_id": "cid",
            "client_secret": "pool-secret",
            "tls": False,
            "demo_host": "127.0.0.1",
            "live_host": "127.0.0.2",
            "port": 5999,
            "max_rps": 20,
            "request_timeout_s": 3,
            "connections": {"demo": demo, "live": live},
        }
    )


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


def test_new_accounts_go_to_the_least_loaded_slot_and_keep_it(factory: FakeFactory) -> None:
    pool = ConnectionPool(api(demo=3), factory)  # type: ignore[arg-type]
    slots = {name: pool.slot_for(name, False) for name in "abcd"}
    assert slots == {"a": (False, 0), "b": (False, 1), "c": (False, 2), "d": (False, 0)}
    # asking again never moves an account
    assert all(pool.slot_for(name, False) == slot for name, slot in slots.items())


async def test_a_reload_that_adds_and_removes_accounts_never_moves_the_others(
    factory: FakeFactory,
) -> None:
    pool = ConnectionPool(api(demo=2), factory)  # type: ignore[arg-type]
    for name in "abc":  # a:0 b:1 c:0
        pool.slot_for(name, False)
    await pool.release("b")
    assert pool.slot_for("d", False) == (False, 1), "slot 1 is now the least loaded"
    assert pool.slot_for("e", False) == (False, 1), "1 member against 2: still slot 1"
    assert pool.slot_for("a", False) == (False, 0)
    assert pool.slot_for("c", False) == (False, 0)


async def test_demo_and_live_accounts_never_share_a_connection(factory: FakeFactory) -> None:
    pool = ConnectionPool(api(demo=1, live=2), factory)  # type: ignore[arg-type]
    demo = await pool.connection_for("d1", False)
    live = await pool.connection_for("l1", True)
    live2 = await pool.connection_for("l2", True)
    assert (pool.slot_for("d1", False), pool.slot_for("l1", True), pool.slot_for("l2", True)) == (
        (False, 0),
        (True, 0),
        (True, 1),
    )
    assert len({id(demo), id(live), id(live2)}) == 3
    assert (demo.url, demo.name) == ("ws://127.0.0.1:5999", "demo-0")  # type: ignore[attr-defined]
    assert (live.url, live.name) == ("ws://127.0.0.2:5999", "live-0")  # type: ignore[attr-defined]
    assert live2.name == "live-1"
    # a second demo account shares the only demo connection
    assert await pool.connection_for("d2", False) is demo
    assert len(factory.made) == 3


async def test_the_connection_is_built_from_the_api_settings(factory: FakeFactory) -> None:
    pool = ConnectionPool(api(), factory)  # type: ignore[arg-type]
    conn = await pool.connection_for("a", False)
    assert isinstance(conn, FakeConnection)
    assert (conn.client_id, conn.secret) == ("cid", "pool-secret")
    assert conn.kw["max_rps"] == 20
    assert conn.kw["request_timeout_s"] == 3
    assert conn.kw["ssl_context"] is None  # tls: false
    await asyncio.sleep(0)
    assert conn.connect_attempts is None, "retried with backoff for as long as it takes"
    assert conn.starts == 1


async def test_accounts_get_their_connection_at_once_and_share_one_start(
    factory: FakeFactory,
) -> None:
    pool = ConnectionPool(api(), factory)  # type: ignore[arg-type]
    factory.gate.clear()  # the connection cannot connect yet
    conns = await asyncio.wait_for(
        asyncio.gather(*(pool.connection_for(name, False) for name in "abc")), 1
    )
    assert len(factory.made) == 1
    assert all(fake(c) is factory.made[0] for c in conns)
    factory.gate.set()
    await asyncio.sleep(0)
    assert factory.made[0].starts == 1
    assert fake(await pool.connection_for("d", False)) is factory.made[0]
    assert factory.made[0].starts == 1
    assert pool.credentials_refused() is None


async def test_refused_credentials_are_reported_and_a_later_call_starts_afresh(
    factory: FakeFactory,
) -> None:
    pool = ConnectionPool(api(), factory)  # type: ignore[arg-type]
    factory.refusals = 1
    first = await pool.connection_for("a", False)
    for _ in range(3):
        await asyncio.sleep(0)
    refused = pool.credentials_refused()
    assert refused is not None and refused.code == "CH_CLIENT_AUTH_FAILURE"
    # a SIGHUP retry asks again: the closed connection is replaced by a fresh start
    conn = await pool.connection_for("b", False)
    assert conn is not first and fake(conn) is factory.made[1]
    await asyncio.sleep(0)
    assert fake(conn).starts == 1
    assert pool.connections == [conn]
    assert pool.credentials_refused() is None


async def test_a_cancelled_waiter_does_not_cancel_the_shared_start(factory: FakeFactory) -> None:
    pool = ConnectionPool(api(), factory)  # type: ignore[arg-type]
    factory.gate.clear()
    first = asyncio.ensure_future(pool.connection_for("a", False))
    second = asyncio.ensure_future(pool.connection_for("b", False))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    factory.gate.set()
    conn = await asyncio.wait_for(second, 1)
    assert fake(conn) is factory.made[0] and len(factory.made) == 1


async def test_release_closes_a_connection_only_once_it_has_no_account(
    factory: FakeFactory,
) -> None:
    pool = ConnectionPool(api(), factory)  # type: ignore[arg-type]
    conn = await pool.connection_for("a", False)
    assert await pool.connection_for("b", False) is conn
    await pool.release("a")
    assert conn.closed == 0  # type: ignore[attr-defined]
    assert pool.connections == [conn]
    await pool.release("b")
    assert conn.closed == 1  # type: ignore[attr-defined]
    assert pool.connections == []
    await pool.release("b")  # unknown by now: nothing happens
    await pool.release("never-seen")
    assert conn.closed == 1  # type: ignore[attr-defined]
    # the next account gets a fresh connection
    fresh = await pool.connection_for("c", False)
    await asyncio.sleep(0)
    assert fresh is not conn and fresh.starts == 1  # type: ignore[attr-defined]


async def test_close_closes_every_connection(factory: FakeFactory) -> None:
    pool = ConnectionPool(api(demo=2), factory)  # type: ignore[arg-type]
    await pool.connection_for("a", False)
    await pool.connection_for("b", False)
    await pool.connection_for("c", True)
    await pool.close()
    assert [c.closed for c in factory.made] == [1, 1, 1]
    assert pool.connections == []

"""Start-up at scale: admission per connection, broker lists shared, re-auth only when lost,
and the daemon's wait for every account to be ready or failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from polling import wait_until

from cmamd.accounts.catalogue import BrokerLists
from cmamd.accounts.session import AccountSession
from cmamd.accounts.startup import ConnectionStartup, admission_capacity, startup_for
from cmamd.accounts.status import SessionStatus
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.connection.errors import SendTimeout
from cmamd.daemon.account_status import not_ready, status_suffix
from cmamd.daemon.startup import wait_until_settled
from cmamd.protocol.errors import OpenApiError
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.state.store import StateStore

from .session_fakes import ACCOUNT, OTHER_ACCOUNT, FakeConnection


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as opened:
        yield opened


@pytest.fixture
def conn() -> FakeConnection:
    return FakeConnection()


@pytest.fixture
async def make_session(
    conn: FakeConnection, store: StateStore
) -> AsyncIterator[Callable[..., AccountSession]]:
    keeper = TokenKeeper(store)
    made: list[AccountSession] = []

    def make(account_id: int = ACCOUNT, **kw: Any) -> AccountSession:
        keeper.seed(account_id, "access-0", "refresh-0")
        session = AccountSession(
            name=f"acc-{account_id}",
            account_id=account_id,
            is_live=False,
            connection=conn,  # type: ignore[arg-type]
            tokens=keeper,
            on_change=lambda change: None,
            **kw,
        )
        made.append(session)
        return session

    yield make
    for session in made:
        await session.stop()


def test_admission_keeps_half_of_what_the_budget_sends_in_one_timeout() -> None:
    assert admission_capacity(50, 10.0) == 250
    assert admission_capacity(30, 0.4) == 6
    assert admission_capacity(1, 0.1) == 1  # never zero: start-up must go on


async def test_admission_holds_back_accounts_beyond_the_capacity() -> None:
    startup = ConnectionStartup(max_rps=10, request_timeout_s=0.4)  # capacity 2
    inside = peak = 0
    release = asyncio.Event()

    async def bring_up() -> None:
        nonlocal inside, peak
        async with startup.admitted():
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(bring_up()) for _ in range(5)]
    await wait_until(lambda: inside == 2, 3.0, 0.005, what="two admitted")
    await asyncio.sleep(0.01)
    assert inside == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2


async def test_broker_lists_are_fetched_once_and_a_failure_is_not_kept() -> None:
    startup = ConnectionStartup(max_rps=50, request_timeout_s=10.0)
    calls = 0
    lists = BrokerLists(pb.ProtoOAAssetListRes(), pb.ProtoOASymbolsListRes())

    async def failing() -> BrokerLists:
        nonlocal calls
        calls += 1
        raise SendTimeout("not sent")

    async def working() -> BrokerLists:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return lists

    with pytest.raises(SendTimeout):
        await startup.broker_lists("Demo", failing)
    got = await asyncio.gather(*(startup.broker_lists("Demo", working) for _ in range(3)))
    assert got == [lists] * 3 and calls == 2
    assert await startup.broker_lists("Demo", failing) is lists  # cached now
    await startup.broker_lists("", working)  # nameless brokers are never shared
    assert calls == 3


async def test_accounts_of_one_broker_share_its_lists(
    conn: FakeConnection, make_session: Callable[..., AccountSession]
) -> None:
    first, second = make_session(ACCOUNT), make_session(OTHER_ACCOUNT)
    await asyncio.gather(first.start(), second.start())
    assert first.ready.is_set() and second.ready.is_set()
    assert conn.count("ProtoOAAssetListReq") == 1
    assert conn.count("ProtoOASymbolsListReq") == 1
    assert conn.count("ProtoOASymbolByIdReq") == 2, "symbol details stay per account"
    assert second.catalogue.symbols_by_name.keys() == first.catalogue.symbols_by_name.keys()
    assert startup_for(conn).lists_fetched == 1


async def test_a_query_not_sent_is_retried_without_authorising_again(
    conn: FakeConnection, make_session: Callable[..., AccountSession]
) -> None:
    conn.fail("ProtoOAReconcileReq", SendTimeout("not sent within 0.4 s"))
    session = make_session()
    await session.start()
    await wait_until(session.ready.is_set, 3.0, 0.005, what="ready after the retry")
    assert conn.count("ProtoOAAccountAuthReq") == 1, "the authorisation was never lost"
    assert conn.count("ProtoOAReconcileReq") == 2


async def test_a_lost_authorisation_is_authorised_again(
    conn: FakeConnection, make_session: Callable[..., AccountSession]
) -> None:
    conn.fail("ProtoOAReconcileReq", OpenApiError("ACCOUNT_NOT_AUTHORIZED"))
    session = make_session()
    await session.start()
    await wait_until(session.ready.is_set, 3.0, 0.005, what="ready after the retry")
    assert conn.count("ProtoOAAccountAuthReq") == 2


class _Session:
    def __init__(
        self,
        name: str,
        status: SessionStatus = SessionStatus.STARTING,
        error: str | None = None,
        linked: bool = True,
    ) -> None:
        self.name = name
        self.status = status
        self.error = error
        self.ready = asyncio.Event()
        self.connection = SimpleNamespace(state="ready" if linked else "disconnected")


async def test_the_start_up_wait_ends_when_every_account_is_ready_or_failed() -> None:
    sessions = [_Session("a"), _Session("b"), _Session("c", status=SessionStatus.FAILED)]

    async def later() -> None:
        await asyncio.sleep(0.05)
        sessions[0].ready.set()
        await asyncio.sleep(0.05)
        sessions[1].ready.set()

    helper = asyncio.create_task(later())
    left = await wait_until_settled(lambda: sessions, 5, time.monotonic)
    await helper
    assert left == []
    by_name = {x.name: x for x in sessions}
    assert status_suffix(not_ready(by_name, by_name)) == "not ready: c (failed)"


async def test_the_start_up_wait_reports_each_progress_so_systemd_keeps_waiting() -> None:
    sessions = [_Session("a"), _Session("b"), _Session("c")]
    progress: list[int] = []

    async def later() -> None:
        for session in sessions[:2]:
            await asyncio.sleep(0.05)
            session.ready.set()
        await asyncio.sleep(0.05)
        sessions[2].status = SessionStatus.FAILED

    helper = asyncio.create_task(later())
    left = await wait_until_settled(
        lambda: sessions,
        5,
        time.monotonic,
        on_progress=lambda: progress.append(sum(s.ready.is_set() for s in sessions)),
    )
    await helper
    assert left == []
    assert progress == [0, 1, 2]  # at first, then each time one more came up


async def test_the_start_up_wait_gives_up_only_when_no_account_progresses() -> None:
    sessions = [_Session("a"), _Session("b")]
    started = time.monotonic()
    left = await wait_until_settled(lambda: sessions, 0.3, time.monotonic)
    assert left == ["a", "b"] and time.monotonic() - started >= 0.3
    by_name = {x.name: x for x in sessions}
    assert status_suffix(not_ready(by_name, by_name)) == "not ready: a (starting), b (starting)"


async def test_an_account_that_cannot_reach_the_server_does_not_hold_ready_back() -> None:
    # it failed visibly (named in STATUS with its reason) and retries in the background
    down = _Session(
        "a", status=SessionStatus.REAUTHORISING, error="start-up failed: refused", linked=False
    )
    started = time.monotonic()
    unreachable = [down]
    left = await wait_until_settled(lambda: unreachable, 5, time.monotonic)
    assert left == [] and time.monotonic() - started < 1
    # with its connection up, a failed first try is waited for: it comes up at the budget's pace
    slow = _Session("b", status=SessionStatus.REAUTHORISING, error="start-up failed: SendTimeout")
    linked = [slow]
    left = await wait_until_settled(lambda: linked, 0.2, time.monotonic)
    assert left == ["b"]


async def test_the_start_up_wait_measures_the_stall_on_the_daemons_clock() -> None:
    # an hour's stall passes in a few checks when the injected clock says so
    ticks = iter(range(0, 10**6, 1200))
    started = time.monotonic()
    left = await wait_until_settled(lambda: [_Session("a")], 3600, lambda: float(next(ticks)))
    assert left == ["a"] and time.monotonic() - started < 3


async def test_periodic_pnl_refreshes_are_admitted_like_start_up_work(
    conn: FakeConnection, make_session: Callable[..., AccountSession]
) -> None:
    conn.max_rps, conn.request_timeout_s = 1, 1.0  # type: ignore[attr-defined]  # capacity 1
    sessions = [make_session(a, pnl_interval_s=0.01) for a in (ACCOUNT, OTHER_ACCOUNT)]
    for session in sessions:
        await session.start()
    gate = conn.hold("ProtoOAGetPositionUnrealizedPnLReq")
    before = conn.count("ProtoOAGetPositionUnrealizedPnLReq")
    await asyncio.sleep(0.1)  # both loops are due several times over
    assert conn.count("ProtoOAGetPositionUnrealizedPnLReq") == before + 1, "one at a time"
    gate.set()
    await wait_until(
        lambda: conn.count("ProtoOAGetPositionUnrealizedPnLReq") >= before + 3,
        3.0,
        0.005,
        what="refreshes go on",
    )

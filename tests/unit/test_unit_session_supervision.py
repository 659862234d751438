"""An account's background work never dies silently (issue 8.4), a fixed bootstrap token
pair is tried (8.5), symbol reloads coalesce and a rejection keeps the broker's code (8.6)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from polling import wait_until
from structlog.testing import capture_logs

from cmamd.accounts.session import AccountSession
from cmamd.accounts.status import SessionStatus
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.state.store import StateStore, StoredTokens

from .session_fakes import ACCOUNT, FakeConnection, execution, order, position


class WrongReplies(FakeConnection):
    """Answers the next request of a type with another message type (a broken server)."""

    def __init__(self) -> None:
        super().__init__()
        self.wrong: dict[str, int] = {}

    async def request(self, message: Message, **kw: Any) -> Message:
        name = type(message).__name__
        if self.wrong.get(name):
            self.wrong[name] -= 1
            self.sent.append(message)
            return pb.ProtoOAVersionRes(version="not what you asked for")
        return await super().request(message, **kw)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as opened:
        yield opened


@pytest.fixture
def conn() -> WrongReplies:
    return WrongReplies()


@pytest.fixture
async def sessions() -> Any:
    made: list[AccountSession] = []
    yield made
    for session in made:
        await session.stop()


def make(conn: FakeConnection, tokens: TokenKeeper, made: list[AccountSession]) -> AccountSession:
    session = AccountSession(
        name="acc-7",
        account_id=ACCOUNT,
        is_live=False,
        connection=conn,  # type: ignore[arg-type]
        tokens=tokens,
        on_change=lambda change: None,
    )
    made.append(session)
    return session


def keeper(store: StateStore) -> TokenKeeper:
    tokens = TokenKeeper(store)
    tokens.seed(ACCOUNT, "access-0", "refresh-0")
    return tokens


@pytest.mark.parametrize("request_name", ["ProtoOAReconcileReq", "ProtoOATraderReq"])
async def test_a_reply_of_the_wrong_type_at_start_is_retried_and_named(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession], request_name: str
) -> None:
    conn.wrong[request_name] = 1
    session = make(conn, keeper(store), sessions)
    with capture_logs() as logs:
        await session.start()
        assert session.status != SessionStatus.FAILED
        assert session.error is not None and "ProtoOAVersionRes" in session.error
        await wait_until(session.ready.is_set, 5.0, 0.005, what="ready after the retry")
    assert session.status == SessionStatus.READY and session.error is None
    assert conn.count(request_name) == 2
    (line,) = [e for e in logs if e["log_level"] == "error"]
    assert "UnexpectedReply" in line["error"] and line["account"] == "acc-7"


async def test_an_unexpected_exception_in_recovery_is_logged_and_retried(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession]
) -> None:
    session = make(conn, keeper(store), sessions)
    await session.start()
    assert session.ready.is_set()
    conn.fail("ProtoOAAccountAuthReq", KeyError("something nobody expected"))
    with capture_logs() as logs:
        conn.feed(pb.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=ACCOUNT))
        await wait_until(lambda: conn.count("ProtoOAAccountAuthReq") == 3, 5, 0.005, what="retried")
        await wait_until(session.ready.is_set, 5.0, 0.005, what="ready again")
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors and "KeyError" in errors[0]["error"], logs
    assert session.status == SessionStatus.READY


async def test_a_task_that_dies_is_logged_at_error_with_the_account(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession]
) -> None:
    session = make(conn, keeper(store), sessions)
    await session.start()

    async def dies() -> None:
        raise ZeroDivisionError("lost work")

    with capture_logs() as logs:
        task = session._spawn(dies())
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    (line,) = [e for e in logs if e["log_level"] == "error"]
    assert line["event"] == "account task died" and "ZeroDivisionError" in line["error"]


async def test_a_refused_stored_pair_gives_way_to_a_different_pair_in_the_config(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession]
) -> None:
    # first start had a wrong pair: it is what the store holds
    store.put_tokens(ACCOUNT, StoredTokens("typo-access", "typo-refresh", None, 0))
    tokens = TokenKeeper(store)
    tokens.seed(ACCOUNT, "access-0", "refresh-0")  # the operator fixed the config
    session = make(conn, tokens, sessions)
    with capture_logs() as logs:
        await session.start()
    assert session.status == SessionStatus.READY
    stored = store.get_tokens(ACCOUNT)
    assert stored is not None and stored.access_token == "access-0"
    assert any("bootstrap pair" in e["event"] for e in logs)


async def test_the_config_pair_is_tried_once_only(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession]
) -> None:
    store.put_tokens(ACCOUNT, StoredTokens("typo-access", "typo-refresh", None, 0))
    tokens = TokenKeeper(store)
    tokens.seed(ACCOUNT, "also-wrong", "also-wrong-refresh")
    session = make(conn, tokens, sessions)
    await session.start()
    assert session.status == SessionStatus.NEEDS_REAUTH  # a refused token pair: `cmamd auth`
    auths = conn.count("ProtoOAAccountAuthReq")
    # a retry (SIGHUP) with the same config does not try the same refused pair again
    tokens.seed(ACCOUNT, "also-wrong", "also-wrong-refresh")
    assert session.retry_if_failed()
    await wait_until(
        lambda: conn.count("ProtoOAAccountAuthReq") > auths, 5.0, 0.005, what="retried"
    )
    await wait_until(
        lambda: session.status == SessionStatus.NEEDS_REAUTH, 5.0, 0.005, what="refused again"
    )
    await asyncio.sleep(0.05)
    assert conn.count("ProtoOAAccountAuthReq") == auths + 1, "one attempt, stored pair only"


async def test_a_burst_of_symbol_changed_events_costs_one_reload_at_a_time(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession]
) -> None:
    session = make(conn, keeper(store), sessions)
    await session.start()
    before = conn.count("ProtoOASymbolByIdReq")
    gate = conn.hold("ProtoOASymbolByIdReq")
    for i in range(2000):
        conn.feed(pb.ProtoOASymbolChangedEvent(ctidTraderAccountId=ACCOUNT, symbolId=[1 + i % 6]))
    await asyncio.sleep(0.05)
    gate.set()
    await wait_until(
        lambda: not session._tasks or len(session._tasks) <= 2, 5.0, 0.005, what="reloads done"
    )
    await asyncio.sleep(0.05)
    assert conn.count("ProtoOASymbolByIdReq") - before <= 2


async def test_an_order_accepted_then_rejected_keeps_the_brokers_code(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession]
) -> None:
    session = make(conn, keeper(store), sessions)
    await session.start()
    accepted = order(77, kind=model_pb2.MARKET, limitPrice=None)
    conn.feed(execution(model_pb2.ORDER_ACCEPTED, order=accepted))
    conn.feed(
        execution(
            model_pb2.ORDER_REJECTED,
            order=order(77, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_REJECTED),
            errorCode="NOT_ENOUGH_MONEY",
        )
    )
    assert session.order_error(77) == "NOT_ENOUGH_MONEY"


async def test_an_event_that_arrives_while_a_reconcile_is_in_flight_is_not_lost(
    conn: WrongReplies, store: StateStore, sessions: list[AccountSession]
) -> None:
    # Frames are read in a burst: the reconcile's (older) snapshot may be applied after
    # an execution event that came behind it. The event must win, or the copy is lost
    # ("closed on the follower") and the planner never reopens it.
    session = make(conn, keeper(store), sessions)
    await session.start()
    gate = conn.hold("ProtoOAReconcileReq")
    resync = asyncio.create_task(session.resync())
    await asyncio.sleep(0.01)
    conn.feed(execution(model_pb2.ORDER_FILLED, position=position(41), order=order(9)))
    assert 41 in session.state.positions
    gate.set()  # the snapshot (taken before the fill) has no position 41
    await resync
    assert 41 in session.state.positions

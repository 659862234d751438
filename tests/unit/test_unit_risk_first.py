"""Risk-reducing changes of a master are marked as such, so the queue serves them first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cmamd.accounts.session import AccountChange, AccountSession
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.state.store import StateStore

from .session_fakes import ACCOUNT, FakeConnection, execution, order, position


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[tuple[FakeConnection, list[AccountChange]]]:
    conn, changes = FakeConnection(), list[AccountChange]()
    with StateStore.open(tmp_path / "state") as store:
        tokens = TokenKeeper(store)
        tokens.seed(ACCOUNT, "access-0", "refresh-0")
        made = AccountSession(
            name="m",
            account_id=ACCOUNT,
            is_live=False,
            connection=conn,  # type: ignore[arg-type]
            tokens=tokens,
            on_change=changes.append,
        )
        await made.start()
        changes.clear()
        yield conn, changes
        await made.stop()


def _filled(
    position_id: int, order_id: int, volume: int, status: model_pb2.ProtoOAPositionStatus
) -> pb.ProtoOAExecutionEvent:
    return execution(
        model_pb2.ORDER_FILLED,
        order=order(order_id, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
        position=position(position_id, volume=volume, status=status),
    )


async def test_opens_are_not_reducing_closes_and_partial_closes_are(
    session: tuple[FakeConnection, list[AccountChange]],
) -> None:
    conn, changes = session
    conn.feed(_filled(7, 50, 1_000_000, model_pb2.POSITION_STATUS_OPEN))
    conn.feed(_filled(7, 51, 400_000, model_pb2.POSITION_STATUS_OPEN))
    conn.feed(_filled(7, 52, 0, model_pb2.POSITION_STATUS_CLOSED))
    assert [c.reducing for c in changes] == [frozenset(), {"p7"}, {"p7"}]


async def test_a_cancelled_pending_order_is_reducing_a_placed_one_is_not(
    session: tuple[FakeConnection, list[AccountChange]],
) -> None:
    conn, changes = session
    conn.feed(execution(model_pb2.ORDER_ACCEPTED, order=order(60)))
    conn.feed(
        execution(
            model_pb2.ORDER_CANCELLED, order=order(60, status=model_pb2.ORDER_STATUS_CANCELLED)
        )
    )
    assert [(c.keys, c.reducing) for c in changes] == [
        (frozenset({"o60"}), frozenset()),
        (frozenset({"o60"}), frozenset({"o60"})),
    ]

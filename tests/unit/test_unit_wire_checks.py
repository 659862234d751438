"""Wire data checks: absurd positions, orders and deals never reach an account's state."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cmamd.accounts import wire_guard
from cmamd.accounts.model import SymbolSpec
from cmamd.accounts.session import AccountChange, AccountSession
from cmamd.accounts.status import SessionStatus
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.accounts.wire_checks import execution_problem
from cmamd.accounts.wire_guard import DropLog
from cmamd.protocol.proto import model_pb2
from cmamd.state.store import StateStore

from .session_fakes import ACCOUNT, FakeConnection, closing_deal, execution, order, position

EURUSD = SymbolSpec(1, "EURUSD", 5, 4, 10_000_000, 100_000, 100_000, 1_000_000_000)
SYMBOLS = {1: EURUSD}


class Lines:
    """A stand-in logger that keeps the error lines."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **kw: Any) -> None:
        self.errors.append((event, kw))


def filled(**kw: Any) -> Any:
    return execution(model_pb2.ORDER_FILLED, **kw)


def priced(position_id: int, price: float) -> model_pb2.ProtoOAPosition:
    message = position(position_id)
    message.price = price
    return message


# pure checks -------------------------------------------------------------------------------
def test_a_sane_fill_passes() -> None:
    event = filled(
        position=position(7, volume=1_000_000),
        order=order(50, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
        deal=closing_deal(7, balance=1_000_000),
    )
    assert execution_problem(event, SYMBOLS) is None


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (filled(position=position(7, volume=2**62)), "volume"),
        (filled(position=position(7, volume=-1)), "volume"),
        (filled(position=position(7, volume=0)), "volume"),  # an open position has a volume
        (filled(position=position(-7)), "not a positive id"),
        (filled(position=position(7, symbol_id=99)), "not in the account's catalogue"),
        (filled(position=position(7, stopLoss=math.nan)), "stop loss nan"),
        (filled(position=position(7, takeProfit=math.inf)), "take profit inf"),
        (filled(position=priced(7, -math.inf)), "entry price"),
        (filled(position=priced(7, 1e300)), "entry price"),
        (filled(position=position(7, utcLastUpdateTimestamp=-1)), "update time"),
        (filled(position=position(7, utcLastUpdateTimestamp=2**62)), "update time"),
        (filled(order=order(50, volume=1_000_000_001)), "order volume"),
        (filled(order=order(50, limitPrice=math.nan)), "limit price"),
        (filled(order=order(-50)), "not a positive id"),
        (filled(order=order(50, expirationTimestamp=-5)), "expiration"),
        (filled(deal=closing_deal(-7, balance=1)), "not a positive id"),
    ],
)
def test_absurd_values_are_named(event: Any, expected: str) -> None:
    problem = execution_problem(event, SYMBOLS)
    assert problem is not None and expected in problem


def test_a_closed_position_may_have_no_volume_left() -> None:
    closed = filled(position=position(7, volume=0, status=model_pb2.POSITION_STATUS_CLOSED))
    assert execution_problem(closed, SYMBOLS) is None


def test_a_netted_position_may_exceed_one_order_s_maximum_but_not_absurdly() -> None:
    assert execution_problem(filled(position=position(7, volume=3_000_000_000)), SYMBOLS) is None
    assert execution_problem(filled(position=position(7, volume=10**14)), SYMBOLS) is not None


def test_drop_log_is_bounded_and_summarises() -> None:
    now = [0.0]
    lines = Lines()
    drops = DropLog(lines, burst=3, interval_s=10, clock=lambda: now[0])
    for _ in range(1000):
        drops.drop("execution event", "volume 2^62")
    assert len(lines.errors) == 3
    assert drops.suppressed == 997 and drops.total == 1000
    now[0] = 10.0
    drops.drop("execution event", "again")
    assert lines.errors[3] == (
        "more invalid data from the server dropped",
        {"count": 997, "interval_s": 10},
    )
    assert lines.errors[4][1]["problem"] == "again"
    assert len(lines.errors) == 5


# in the session ----------------------------------------------------------------------------
@pytest.fixture
async def ready(tmp_path: Path) -> AsyncIterator[tuple[FakeConnection, AccountSession, list[Any]]]:
    with StateStore.open(tmp_path / "state") as store:
        tokens = TokenKeeper(store)
        tokens.seed(ACCOUNT, "access-0", "refresh-0")
        conn = FakeConnection()
        conn.positions = [position(11, volume=500_000)]
        conn.orders = [order(21)]
        changes: list[AccountChange] = []
        session = AccountSession(
            name="acc",
            account_id=ACCOUNT,
            is_live=False,
            connection=conn,  # type: ignore[arg-type]
            tokens=tokens,
            on_change=changes.append,
        )
        await session.start()
        assert session.status == SessionStatus.READY
        changes.clear()
        yield conn, session, changes
        await session.stop()


Ready = tuple[FakeConnection, AccountSession, list[Any]]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: filled(position=position(7, volume=2**62)),
        lambda: filled(position=position(-7)),
        lambda: filled(position=position(7, stopLoss=math.nan)),
        lambda: filled(position=priced(7, math.inf)),
        lambda: filled(position=position(11, volume=-500_000)),
        lambda: filled(order=order(-3)),
        lambda: filled(order=order(21, volume=2**62)),
        lambda: filled(position=position(7), deal=closing_deal(7, balance=1, money_digits=2**20)),
    ],
)
async def test_an_absurd_execution_event_does_not_touch_the_state(
    ready: Ready, bad: Callable[[], Any]
) -> None:
    conn, session, changes = ready
    before = (dict(session.state.positions), dict(session.state.orders), session.state.trader)
    conn.feed(bad())
    assert changes == []
    assert (session.state.positions, session.state.orders, session.state.trader) == before
    # and the session goes on: a sane event right after is applied
    conn.feed(filled(position=position(8, volume=100_000)))
    assert [c.keys for c in changes] == [{"p8"}]


async def test_a_flood_of_absurd_events_logs_a_bounded_number_of_lines(
    ready: Ready, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, session, _ = ready
    lines = Lines()
    monkeypatch.setattr(session._wire, "drops", DropLog(lines))
    for i in range(500):
        conn.feed(filled(position=position(1000 + i, volume=2**62)))
    assert len(lines.errors) <= 5
    assert session.state.positions.keys() == {11}


async def test_a_bad_item_in_a_reconcile_keeps_what_was_known_or_is_left_out(
    ready: Ready,
) -> None:
    conn, session, _ = ready
    known = session.state.positions[11]
    known_order = session.state.orders[21]
    conn.positions = [
        position(11, volume=500_000, stopLoss=math.nan),  # known: the old view is kept
        position(12, volume=2**62),  # new and absurd: left out
        position(13, volume=200_000),  # fine
    ]
    conn.orders = [order(21, limitPrice=math.inf), order(22, volume=-1)]
    await session.resync()
    assert session.state.positions == {11: known, 13: session.state.positions[13]}
    assert session.state.positions[13].volume == 200_000
    assert session.state.orders == {21: known_order}


def test_a_kept_item_round_trips_through_the_wire_form() -> None:
    from cmamd.accounts import convert

    pos = convert.position(position(11, volume=500_000, stopLoss=1.08, takeProfit=1.09))
    assert convert.position(wire_guard.position_to_pb(pos)) == pos
    pending = convert.pending_order(
        order(21, stopLoss=1.06, expirationTimestamp=1_800_000_000_000, positionId=4)
    )
    assert convert.pending_order(wire_guard.pending_order_to_pb(pending)) == pending


# replays -----------------------------------------------------------------------------------
async def test_a_replayed_fill_of_a_closed_position_does_not_reopen_it(ready: Ready) -> None:
    conn, session, changes = ready
    opened = filled(position=position(7, volume=100_000, utcLastUpdateTimestamp=1_000))
    conn.feed(opened)
    closed = position(
        7, volume=0, status=model_pb2.POSITION_STATUS_CLOSED, utcLastUpdateTimestamp=2_000
    )
    conn.feed(filled(position=closed))
    assert 7 not in session.state.positions and len(changes) == 2
    conn.feed(opened)  # the same open fill again
    assert 7 not in session.state.positions and len(changes) == 2


async def test_an_older_update_of_an_open_position_is_not_applied(ready: Ready) -> None:
    conn, session, changes = ready
    conn.feed(filled(position=position(7, volume=300_000, utcLastUpdateTimestamp=5_000)))
    conn.feed(filled(position=position(7, volume=100_000, utcLastUpdateTimestamp=4_000)))
    assert session.state.positions[7].volume == 300_000 and len(changes) == 1
    conn.feed(filled(position=position(7, volume=200_000, utcLastUpdateTimestamp=5_000)))
    assert session.state.positions[7].volume == 200_000  # same time: not older, applied


async def test_an_ended_order_is_not_put_back_on_the_book(ready: Ready) -> None:
    conn, session, _ = ready
    accepted = execution(model_pb2.ORDER_ACCEPTED, order=order(30))
    conn.feed(accepted)
    assert 30 in session.state.orders
    cancelled = order(30, status=model_pb2.ORDER_STATUS_CANCELLED)
    conn.feed(execution(model_pb2.ORDER_CANCELLED, order=cancelled))
    conn.feed(accepted)
    assert 30 not in session.state.orders


async def test_what_a_reconcile_no_longer_shows_has_ended(ready: Ready) -> None:
    conn, session, _ = ready
    conn.positions, conn.orders = [], []
    await session.resync()
    assert session.state.positions == {} and session.state.orders == {}
    conn.feed(filled(position=position(11, volume=500_000)))  # an old fill of position 11
    conn.feed(execution(model_pb2.ORDER_ACCEPTED, order=order(21)))
    assert session.state.positions == {} and session.state.orders == {}


def test_before_the_catalogue_is_loaded_only_the_symbol_cannot_be_checked() -> None:
    assert execution_problem(filled(position=position(7, symbol_id=99)), {}) is None
    assert execution_problem(filled(position=position(7, volume=2**62)), {}) is not None
    assert execution_problem(filled(deal=closing_deal(7, balance=1)), {}) is None


def test_a_closing_order_may_be_as_large_as_a_netted_position() -> None:
    closing = order(50, kind=model_pb2.MARKET, volume=3_000_000_000, closingOrder=True)
    assert execution_problem(filled(order=closing), SYMBOLS) is None
    opening = order(50, kind=model_pb2.MARKET, volume=3_000_000_000)
    assert execution_problem(filled(order=opening), SYMBOLS) is not None


# the fast path -----------------------------------------------------------------------------
_EDGES: dict[str, list[Any]] = {
    "int": [-(2**62), -1, 0, 1, 99, 10**9, 10**13, 10**14, 10**15, 10**15 + 1, 2**62],
    "float": [-math.inf, -1.0, -0.0, 0.0, 1.1, 1e12, 1.000001e12, 1e300, math.inf, math.nan],
}


def _sane_events() -> list[Any]:
    return [
        filled(
            position=position(7, volume=1_000_000),
            order=order(50, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
            deal=closing_deal(7, balance=1_000_000),
        ),
        filled(position=position(7, volume=0, status=model_pb2.POSITION_STATUS_CLOSED)),
        filled(order=order(50, kind=model_pb2.MARKET, volume=3_000_000_000, closingOrder=True)),
        filled(order=order(51, limitPrice=1.1, stopLoss=1.0, expirationTimestamp=10**12)),
    ]


def _repeated(field: Any) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 6
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _numeric_fields(message: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    found: list[tuple[tuple[str, ...], str]] = []
    for field in message.DESCRIPTOR.fields:
        if _repeated(field):
            continue
        if field.type == field.TYPE_MESSAGE:
            if message.HasField(field.name):
                found += _numeric_fields(getattr(message, field.name), (*path, field.name))
        elif field.cpp_type in (
            field.CPPTYPE_INT32,
            field.CPPTYPE_INT64,
            field.CPPTYPE_UINT32,
            field.CPPTYPE_UINT64,
            field.CPPTYPE_ENUM,
            field.CPPTYPE_DOUBLE,
            field.CPPTYPE_FLOAT,
        ):
            kind = (
                "float" if field.cpp_type in (field.CPPTYPE_DOUBLE, field.CPPTYPE_FLOAT) else "int"
            )
            found.append(((*path, field.name), kind))
    return found


def _mutated(event: Any, path: tuple[str, ...], value: Any) -> Any | None:
    copy = type(event)()
    copy.CopyFrom(event)
    holder = copy
    for name in path[:-1]:
        holder = getattr(holder, name)
    try:
        setattr(holder, path[-1], value)
    except (ValueError, TypeError):
        return None  # out of the field's own range: the decoder never yields it
    return copy


@pytest.mark.parametrize("symbols", [SYMBOLS, {}])
def test_the_fast_path_never_passes_what_the_full_checks_refuse(symbols: Any) -> None:
    from cmamd.accounts.wire_checks import full_execution_problem, plainly_sound

    refused = 0
    for event in _sane_events():
        assert plainly_sound(event, SYMBOLS), "a sane event must take the fast path"
        for path, kind in _numeric_fields(event):
            for value in _EDGES[kind]:
                mutated = _mutated(event, path, value)
                if mutated is None:
                    continue
                full = full_execution_problem(mutated, symbols)
                if full is not None:
                    refused += 1
                    assert not plainly_sound(mutated, symbols), (path, value, full)
                assert execution_problem(mutated, symbols) == full
    assert refused > 100  # the mutations do reach the checks

"""The session's pure parts: cache updates from events and reconciles, order events, status."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from cmamd import metrics
from cmamd.accounts import convert
from cmamd.accounts.model import AccountState
from cmamd.accounts.order_events import OrderEvents
from cmamd.accounts.state_updates import apply_execution, apply_reconcile
from cmamd.accounts.status import NEEDS_OPERATOR, RETRYABLE, SETTLED, SessionStatus
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2

from .session_fakes import ACCOUNT, closing_deal, execution, order, position, trader


def opened(*position_ids: int) -> AccountState:
    state = AccountState(ACCOUNT, trader=convert.trader_info(trader()))
    for i in position_ids:
        state.positions[i] = convert.position(position(i))
    return state


def test_an_open_adds_the_position_and_reduces_nothing() -> None:
    state = opened()
    effect = apply_execution(state, execution(model_pb2.ORDER_FILLED, position=position(7)))
    assert effect.keys == {"p7"} and not effect.reducing
    assert state.positions[7].volume == 1_000_000


def test_a_partial_close_reduces_risk_and_books_the_balance() -> None:
    state = opened(7)
    event = execution(
        model_pb2.ORDER_FILLED,
        position=position(7, volume=400_000),
        deal=closing_deal(7, balance=1_012_345),
    )
    effect = apply_execution(state, event)
    assert (effect.keys, effect.reducing) == (frozenset({"p7"}), frozenset({"p7"}))
    assert state.trader is not None and state.trader.balance == Decimal("10123.45")


def test_a_close_or_an_error_ends_the_position_and_reduces_risk() -> None:
    for status in (model_pb2.POSITION_STATUS_CLOSED, model_pb2.POSITION_STATUS_ERROR):
        state = opened(7)
        event = execution(model_pb2.ORDER_FILLED, position=position(7, status=status))
        effect = apply_execution(state, event)
        assert (effect.keys, effect.reducing) == (frozenset({"p7"}), frozenset({"p7"}))
        assert state.positions == {}


def test_a_cancelled_order_reduces_risk_a_filled_one_names_its_position() -> None:
    state = opened()
    apply_execution(state, execution(model_pb2.ORDER_ACCEPTED, order=order(60)))
    apply_execution(state, execution(model_pb2.ORDER_ACCEPTED, order=order(61)))
    cancelled = order(60, status=model_pb2.ORDER_STATUS_CANCELLED)
    effect = apply_execution(state, execution(model_pb2.ORDER_CANCELLED, order=cancelled))
    assert (effect.keys, effect.reducing) == (frozenset({"o60"}), frozenset({"o60"}))
    filled = order(61, status=model_pb2.ORDER_STATUS_FILLED, positionId=71)
    event = execution(model_pb2.ORDER_FILLED, order=filled, position=position(71))
    effect = apply_execution(state, event)
    assert effect.keys == {"o61", "p71"} and effect.origins == {"p71": "o61"}
    assert not effect.reducing
    assert state.orders == {}


def test_an_event_about_an_unknown_ended_order_changes_nothing() -> None:
    state = opened()
    cancelled = order(99, status=model_pb2.ORDER_STATUS_CANCELLED)
    effect = apply_execution(state, execution(model_pb2.ORDER_CANCELLED, order=cancelled))
    assert not effect.keys and state.orders == {}


def test_a_reconcile_keeps_what_events_changed_in_flight_and_names_every_key() -> None:
    state = opened(7, 8)
    # while the reconcile was in flight, an event closed 8: the reply still lists it
    state.positions.pop(8)
    reply = pb.ProtoOAReconcileRes(
        ctidTraderAccountId=ACCOUNT,
        position=[position(8), position(9)],
        order=[order(60)],
    )
    touched = apply_reconcile(state, reply, {"p8"})
    assert sorted(state.positions) == [9], "7 is gone on the server, 8 stays closed"
    assert list(state.orders) == [60]
    assert touched == {"p7", "p9", "o60"}


async def test_an_order_event_seen_before_the_wait_answers_it_at_once() -> None:
    events = OrderEvents()
    events.note(5, model_pb2.ORDER_REJECTED, "NOT_ENOUGH_MONEY")
    got = await events.wait_for(5, {model_pb2.ORDER_REJECTED}, timeout=0.01)
    assert (got, events.error_of(5), events.error_of(6)) == (
        model_pb2.ORDER_REJECTED,
        "NOT_ENOUGH_MONEY",
        "",
    )


async def test_a_waiter_is_woken_by_the_event_it_waits_for_only() -> None:
    events = OrderEvents()
    waiting = asyncio.ensure_future(events.wait_for(5, {model_pb2.ORDER_FILLED}, timeout=5))
    await asyncio.sleep(0)
    events.note(5, model_pb2.ORDER_ACCEPTED)
    await asyncio.sleep(0)
    assert not waiting.done()
    events.note(5, model_pb2.ORDER_FILLED)
    assert await waiting == model_pb2.ORDER_FILLED
    with pytest.raises(TimeoutError):
        await events.wait_for(6, {model_pb2.ORDER_FILLED}, timeout=0.01)


def test_order_events_are_remembered_up_to_a_bound() -> None:
    events = OrderEvents(keep=3)
    for order_id in range(10):
        events.note(order_id, model_pb2.ORDER_REJECTED, f"E{order_id}")
    assert [events.error_of(i) for i in range(10)] == [""] * 7 + ["E7", "E8", "E9"]


def test_session_status_reads_as_it_always_did() -> None:
    # STATUS= lines, ctl status, metrics labels and alert rules match these words
    assert [str(s) for s in SessionStatus] == [
        "new",
        "starting",
        "ready",
        "reauthorising",
        "needs re-authorisation",
        "failed",
        "stopped",
    ]
    assert NEEDS_OPERATOR <= SETTLED and NEEDS_OPERATOR <= RETRYABLE
    assert SessionStatus.READY not in SETTLED | RETRYABLE
    assert SessionStatus.REAUTHORISING not in SETTLED | RETRYABLE


def test_every_session_status_is_a_metrics_label_even_at_zero() -> None:
    # an alert rule on `cmamd_accounts{state="needs re-authorisation"} > 0` needs the series
    status = {
        "queue": {"depth": 0, "in_progress": 0},
        "accounts": [
            {"name": "a", "state": SessionStatus.READY, "ready": True, "token_expires_ms": None}
        ],
        "connections": [],
    }
    (by_state,) = [f for f in metrics.families(status) if f.name == "cmamd_accounts"]
    counts = {sample.labels["state"]: sample.value for sample in by_state.samples}
    assert counts == {str(s): (1 if s is SessionStatus.READY else 0) for s in SessionStatus}

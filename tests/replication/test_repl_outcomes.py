"""What a copy order's answer means, and what follows from it (outcomes.py): no sockets."""

from __future__ import annotations

import pytest

from cmamd.accounts.model import OrderKind, Side
from cmamd.protocol.errors import OpenApiError
from cmamd.protocol.proto import model_pb2
from cmamd.replication.intents import (
    ClosePosition,
    Intent,
    OpenPosition,
    PlacePendingOrder,
)
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.outcomes import (
    NextStep,
    Outcome,
    SendResult,
    from_completion,
    from_error,
    next_retry_delay,
    next_step,
    settled_link,
)
from cmamd.replication.tuning import ReplicationTuning

OPEN = OpenPosition(2002, "p1", 1, Side.BUY, 100_000, None, None, "cm:1001:p1", "cm-x-1")
PLACE = PlacePendingOrder(
    follower_account_id=2002,
    key="o5",
    symbol_id=1,
    side=Side.BUY,
    kind=OrderKind.LIMIT,
    volume=100_000,
    price=1.05,
    stop_loss=None,
    take_profit=None,
    expiration_ms=None,
    label="cm:1001:o5",
    client_order_id="cm-x-2",
)
CLOSE = ClosePosition(2002, "p1", 77, 100_000)
OPENING = Link("r", 1001, 2002, "p1", LinkStatus.OPENING, 100_000, 100_000)


def test_a_close_that_finds_nothing_left_is_done() -> None:
    result = from_error(CLOSE, OpenApiError("POSITION_NOT_FOUND"))
    assert result.outcome is Outcome.DONE and "already closed" in result.detail
    # the same code refusing an open is a refusal
    assert from_error(OPEN, OpenApiError("POSITION_NOT_FOUND")).outcome is Outcome.REJECTED


def test_a_lost_session_defers_and_asks_for_recovery() -> None:
    result = from_error(OPEN, OpenApiError("ACCOUNT_NOT_AUTHORIZED"))
    assert (result.outcome, result.session_lost) == (Outcome.DEFERRED, True)
    assert next_step(OPEN, result) is NextStep.STOP
    assert result.outcome.journaled == "rejected" and result.outcome.reported is Outcome.DEFERRED


def test_the_rejection_code_is_the_completing_events() -> None:
    result = from_completion(OPEN, model_pb2.ORDER_REJECTED, "NOT_ENOUGH_MONEY")
    assert (result.outcome, result.detail) == (Outcome.REJECTED, "NOT_ENOUGH_MONEY")
    assert result.code == "NOT_ENOUGH_MONEY"  # logged as the line's `code`
    assert from_completion(OPEN, model_pb2.ORDER_REJECTED, "").detail == "ORDER_REJECTED"


def test_fills_and_unfilled_cancels() -> None:
    assert from_completion(OPEN, model_pb2.ORDER_FILLED, "") == SendResult(
        Outcome.DONE, filled=True
    )
    cancelled = from_completion(OPEN, model_pb2.ORDER_CANCELLED, "")
    assert cancelled.outcome is Outcome.DONE and not cancelled.filled
    # a cancel of a close's order after a partial fill is done too, not filled
    assert not from_completion(CLOSE, model_pb2.ORDER_CANCELLED, "").filled


@pytest.mark.parametrize(
    ("intent", "result", "status"),
    [
        (OPEN, SendResult(Outcome.DONE, filled=True), LinkStatus.OPEN),
        (OPEN, SendResult(Outcome.DONE), None),  # cancelled unfilled: decided again
        (PLACE, SendResult(Outcome.DONE), LinkStatus.OPEN),  # a pending copy accepted
        (OPEN, SendResult(Outcome.REJECTED, "NOT_ENOUGH_MONEY"), LinkStatus.REJECTED),
        (OPEN, SendResult(Outcome.UNKNOWN, "timeout"), None),  # settled by reconcile
        (OPEN, SendResult(Outcome.NOT_SENT, "not sent"), None),
        (CLOSE, SendResult(Outcome.DONE, filled=True), None),  # only opens move a link
    ],
)
def test_link_settlement(intent: Intent, result: SendResult, status: LinkStatus | None) -> None:
    link = OPENING if intent is not PLACE else Link("r", 1001, 2002, "o5", LinkStatus.OPENING)
    settled = settled_link(link, intent, result, now_ms=5)
    assert (settled.status if settled else None) is status
    if settled is not None:
        assert settled.updated_ms == 5
        if status is LinkStatus.REJECTED:
            assert settled.reason == result.detail


def test_an_open_link_is_never_moved_back() -> None:
    opened = OPENING.opened(1)
    assert settled_link(opened, OPEN, SendResult(Outcome.REJECTED, "X"), 2) is None
    assert settled_link(None, OPEN, SendResult(Outcome.DONE, filled=True), 2) is None


@pytest.mark.parametrize(
    ("intent", "result", "step"),
    [
        (OPEN, SendResult(Outcome.DONE), NextStep.CONTINUE),
        (OPEN, SendResult(Outcome.UNKNOWN), NextStep.SETTLE),
        (OPEN, SendResult(Outcome.NOT_SENT), NextStep.STOP),
        # a refused open is never retried: by the time the market opens the trade is stale
        (OPEN, SendResult(Outcome.REJECTED, "MARKET_CLOSED"), NextStep.STOP),
        (CLOSE, SendResult(Outcome.REJECTED, "MARKET_CLOSED"), NextStep.RETRY_LATER),
        (CLOSE, SendResult(Outcome.REJECTED, "TRADING_DISABLED"), NextStep.RETRY_LATER),
        (CLOSE, SendResult(Outcome.REJECTED, "NOT_ENOUGH_MONEY"), NextStep.STOP),
    ],
)
def test_next_step(intent: Intent, result: SendResult, step: NextStep) -> None:
    assert next_step(intent, result) is step


def test_retry_backoff_doubles_up_to_its_ceiling() -> None:
    tuning = ReplicationTuning(retry_first_s=30.0, retry_max_s=300.0)
    delays: list[float] = []
    previous: float | None = None
    for _ in range(6):
        previous = next_retry_delay(previous, tuning)
        delays.append(previous)
    assert delays == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    assert next_retry_delay(None, ReplicationTuning(retry_first_s=0.2)) == 0.2

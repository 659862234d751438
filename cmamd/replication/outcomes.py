"""What a sent copy order came to, and what follows from it: pure decisions, no I/O.

The executor sends an intent and hands this module what came back — an exception, the
reply, or the execution type of the event that completed the order with that event's
error code — and gets a :class:`SendResult`. From the result and the intent follow the
link's settlement (an open confirmed OPEN or REJECTED), the journal's word for it, and the
next step (carry on, stop, retry later, settle by reconciling), all read from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from cmamd.protocol.errors import OpenApiError
from cmamd.protocol.proto import model_pb2
from cmamd.replication.intents import (
    ClosePosition,
    Intent,
    OpenPosition,
    PlacePendingOrder,
    reduces_risk,
)
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.trade_requests import REJECTED
from cmamd.replication.tuning import ReplicationTuning

RETRY_LATER_CODES = frozenset(
    {"MARKET_CLOSED", "SYMBOL_HAS_HOLIDAY", "TRADING_DISABLED", "NO_QUOTES"}
)
"""Refusals of a close/amend/cancel that pass with time: retried, or a close would be missed.
A refused *open* is never retried: by the time the market opens the trade is stale."""
GONE_CODES = frozenset({"POSITION_NOT_FOUND", "POSITION_NOT_OPEN"})
"""A close refused with these found nothing left to close: the goal is reached."""


class Outcome(StrEnum):
    DONE = "done"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # sent, no answer: the broker may or may not have acted
    DEFERRED = "deferred"  # not executed: the account's session is gone; planned again
    NOT_SENT = "not_sent"  # never left the process: safe to plan again

    @property
    def reported(self) -> Outcome:
        """How it is counted and reported: a request never sent is deferred work."""
        return Outcome.DEFERRED if self is Outcome.NOT_SENT else self

    @property
    def journaled(self) -> str:
        """The journal's outcome: what was not executed is journaled rejected (final)."""
        return "rejected" if self in (Outcome.DEFERRED, Outcome.NOT_SENT) else self.value


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    detail: str = ""  # the broker's error code, or why the outcome is what it is
    filled: bool = False  # an open that the completing event shows filled
    session_lost: bool = False  # the account must be re-authorised before planning again
    code: str = ""  # the broker's error code, when it gave one


class NextStep(Enum):
    CONTINUE = "continue"  # the next intent of the plan
    STOP = "stop"  # the key waits for new facts (an event, a reconnect)
    RETRY_LATER = "retry_later"  # planned again after a growing pause
    SETTLE = "settle"  # reconcile the follower, then plan the key again


def opens(intent: Intent) -> bool:
    return isinstance(intent, OpenPosition | PlacePendingOrder)


def from_error(intent: Intent, error: OpenApiError) -> SendResult:
    """The result of a request the server answered with an error."""
    if isinstance(intent, ClosePosition) and error.code in GONE_CODES:
        return SendResult(Outcome.DONE, f"already closed ({error.code})", code=error.code)
    if error.session_lost:
        return SendResult(Outcome.DEFERRED, error.code, session_lost=True, code=error.code)
    return SendResult(Outcome.REJECTED, error.code, code=error.code)


def from_completion(intent: Intent, execution_type: int, code: str) -> SendResult:
    """The result of an order ended by an execution event of ``execution_type``; ``code``
    is the error code that completing event carried ("" when none)."""
    if execution_type in REJECTED:
        return SendResult(Outcome.REJECTED, code or "ORDER_REJECTED", code=code or "ORDER_REJECTED")
    if execution_type == model_pb2.ORDER_CANCELLED and isinstance(intent, OpenPosition):
        return SendResult(Outcome.DONE, "cancelled unfilled (slippage or liquidity)")
    return SendResult(Outcome.DONE, filled=execution_type == model_pb2.ORDER_FILLED)


def settled_link(link: Link | None, intent: Intent, result: SendResult, now_ms: int) -> Link | None:
    """The link to store once an open's outcome is known, None when it stays as it is.

    Only an OPENING link of an open moves: to OPEN when the copy exists (filled, or a
    pending copy accepted), to REJECTED when the broker refused it.
    """
    if link is None or link.status is not LinkStatus.OPENING or not opens(intent):
        return None
    if result.outcome is Outcome.DONE and (result.filled or isinstance(intent, PlacePendingOrder)):
        return link.opened(now_ms)
    if result.outcome is Outcome.REJECTED:
        return link.rejected(result.detail, now_ms)
    return None


def next_step(intent: Intent, result: SendResult) -> NextStep:
    match result.outcome:
        case Outcome.DONE:
            return NextStep.CONTINUE
        case Outcome.DEFERRED | Outcome.NOT_SENT:
            return NextStep.STOP
        case Outcome.REJECTED:
            if reduces_risk(intent) and result.detail in RETRY_LATER_CODES:
                return NextStep.RETRY_LATER
            return NextStep.STOP
        case Outcome.UNKNOWN:
            return NextStep.SETTLE


def next_retry_delay(previous_s: float | None, tuning: ReplicationTuning) -> float:
    """Pause before the next retry of a refused risk-reducing order: ``retry_first_s``,
    doubling up to ``retry_max_s``."""
    if previous_s is None:
        return min(tuning.retry_first_s, tuning.retry_max_s)
    return min(previous_s * 2, tuning.retry_max_s)

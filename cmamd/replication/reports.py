"""What the replicator tells about each follower action once it is over: a log line with
its facts as fields, the counters, and a :class:`CopyReport` for STATUS, metrics and the
demo. Built after the order went out, never before: nothing of it is on the copy path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cmamd.accounts.model import Position, SymbolSpec
from cmamd.logs import get_logger
from cmamd.protocol import units
from cmamd.replication import trade_requests
from cmamd.replication.intents import ClosePosition, Intent
from cmamd.replication.outcomes import Outcome, SendResult
from cmamd.replication.routes import CopyRoute

log = get_logger("cmamd.replication")

EVENTS = {
    Outcome.DONE: "copy done",
    Outcome.REJECTED: "copy rejected",
    Outcome.UNKNOWN: "copy unknown",
    Outcome.DEFERRED: "copy deferred",
}


@dataclass(frozen=True, slots=True)
class CopyReport:
    """One follower action, for logs, STATUS and the demo's live view."""

    rule: str
    follower: str
    key: str
    action: str
    summary: str  # e.g. "open buy 1.2 lots EURUSD"
    volume: int | None
    outcome: str  # done | rejected | unknown | deferred
    latency_ms: float
    detail: str = ""


@dataclass(slots=True)
class Stats:
    done: int = 0
    rejected: int = 0
    unknown: int = 0
    deferred: int = 0  # not executed (the account was de-authorised); planned again

    def count(self, outcome: Outcome) -> None:
        match outcome.reported:
            case Outcome.DONE:
                self.done += 1
            case Outcome.REJECTED:
                self.rejected += 1
            case Outcome.UNKNOWN:
                self.unknown += 1
            case _:
                self.deferred += 1


@dataclass(frozen=True, slots=True)
class SentCopy:
    """What is kept of an intent while it is sent, to report it afterwards."""

    route: CopyRoute
    key: str
    intent: Intent
    symbols: Mapping[int, SymbolSpec]
    closing: Mapping[int, Position]  # the position a close acts on, as it was before


def sent_copy(
    route: CopyRoute,
    key: str,
    intent: Intent,
    symbols: Mapping[int, SymbolSpec],
    positions: Mapping[int, Position],
) -> SentCopy:
    closing: dict[int, Position] = {}
    if isinstance(intent, ClosePosition) and intent.position_id in positions:
        closing[intent.position_id] = positions[intent.position_id]
    return SentCopy(route, key, intent, symbols, closing)


def _quantities(sent: SentCopy) -> dict[str, object]:
    volume: int | None = getattr(sent.intent, "volume", None)
    if volume is None:
        return {}
    symbol_id: int | None = getattr(sent.intent, "symbol_id", None)
    if isinstance(sent.intent, ClosePosition):
        position = sent.closing.get(sent.intent.position_id)
        symbol_id = position.symbol_id if position is not None else None
    spec = sent.symbols.get(symbol_id) if symbol_id is not None else None
    if spec is None:
        return {"volume": volume}
    return {"volume": volume, "lots": units.format_lots(volume, spec.lot_size), "symbol": spec.name}


def report(
    sent: SentCopy,
    result: SendResult,
    latency_ms: float,
    stats: Stats,
    on_report: Callable[[CopyReport], None] | None,
) -> None:
    reported, detail = result.outcome.reported, result.detail
    stats.count(result.outcome)
    summary = trade_requests.summarize(sent.intent, sent.symbols, sent.closing)
    log_method = log.info if reported is Outcome.DONE else log.warning
    log_method(
        EVENTS[reported],
        rule=sent.route.target.rule,
        follower=sent.route.follower,
        master_item=sent.key,
        action=summary,
        client_order_id=getattr(sent.intent, "client_order_id", None),
        latency_ms=round(latency_ms, 1),
        code=result.code or None,
        reason=(detail or None) if detail != result.code else None,
        **_quantities(sent),
    )
    if on_report is not None:
        on_report(
            CopyReport(
                sent.route.target.rule,
                sent.route.follower,
                sent.key,
                type(sent.intent).__name__,
                summary,
                getattr(sent.intent, "volume", None),
                reported.value,
                latency_ms,
                detail,
            )
        )

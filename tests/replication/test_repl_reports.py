"""A copy's outcome line is data: a fixed event, quantities in fields (reports.py)."""

from __future__ import annotations

from structlog.testing import capture_logs

from cmamd.accounts.model import Side
from cmamd.replication.intents import ClosePosition, OpenPosition
from cmamd.replication.outcomes import Outcome, SendResult
from cmamd.replication.reports import CopyReport, Stats, report, sent_copy
from cmamd.replication.routes import CopyRoute

from .repl_kit import F_EURUSD, F, M, position, target

ROUTE = CopyRoute(f"main:{M}:{F}", target(), "master", "follower")
SYMBOLS = {F_EURUSD.symbol_id: F_EURUSD}


def test_a_done_open_names_volume_lots_and_symbol() -> None:
    intent = OpenPosition(F, "p1", F_EURUSD.symbol_id, Side.BUY, 1_200_000, None, None, "l", "c")
    reports: list[CopyReport] = []
    stats = Stats()
    with capture_logs() as lines:
        sent = sent_copy(ROUTE, "p1", intent, SYMBOLS, {})
        report(sent, SendResult(Outcome.DONE, filled=True), 1.5, stats, reports.append)
    (line,) = lines
    assert line["event"] == "copy done"
    assert (line["volume"], line["lots"], line["symbol"]) == (1_200_000, "0.12", "EURUSD.m")
    assert (line["follower"], line["master_item"], line["rule"]) == ("follower", "p1", "main")
    assert reports[0].outcome == "done" and stats.done == 1


def test_a_refusal_carries_the_brokers_code_and_a_close_the_position_it_acted_on() -> None:
    held = position(77, 2_000_000, symbol_id=F_EURUSD.symbol_id)
    intent = ClosePosition(F, "p1", 77, 2_000_000)
    stats = Stats()
    with capture_logs() as lines:
        sent = sent_copy(ROUTE, "p1", intent, SYMBOLS, {77: held})
        # reported after the send: the position may be gone from the state by then
        result = SendResult(Outcome.REJECTED, "MARKET_CLOSED", code="MARKET_CLOSED")
        report(sent, result, 3.0, stats, None)
    (line,) = lines
    assert line["event"] == "copy rejected" and line["code"] == "MARKET_CLOSED"
    assert line["action"] == "close 0.20 lots EURUSD.m" and line["lots"] == "0.20"
    assert stats.rejected == 1


def test_a_request_never_sent_is_counted_deferred() -> None:
    intent = ClosePosition(F, "p1", 77, 1)
    stats = Stats()
    with capture_logs() as lines:
        sent = sent_copy(ROUTE, "p1", intent, SYMBOLS, {})
        report(sent, SendResult(Outcome.NOT_SENT, "not sent: link down"), 0.1, stats, None)
    assert lines[0]["event"] == "copy deferred" and lines[0]["reason"] == "not sent: link down"
    assert stats.deferred == 1

"""An alert's log line carries its details under the names every other line uses."""

from __future__ import annotations

import structlog

from cmamd.alerts import bus
from cmamd.alerts.bus import alert_line_fields
from cmamd.alerts.dispatcher import AlertDispatcher
from cmamd.config.operating import AlertsConfig


def test_details_keep_their_canonical_names() -> None:
    details = {"rule": "main", "follower": "f1", "master_item": "p7", "code": "MARKET_CLOSED"}
    assert alert_line_fields("copy_refused", "refused", details) == {
        "cause": "copy_refused",
        "text": "refused",
        **details,
    }


def test_a_detail_named_like_a_key_of_the_line_does_not_replace_it() -> None:
    fields = alert_line_fields("c", "t", {"event": "x", "cause": "y", "account": "a"})
    assert fields == {
        "cause": "c",
        "text": "t",
        "detail_event": "x",
        "detail_cause": "y",
        "account": "a",
    }


async def test_the_dispatcher_and_the_bus_log_the_details_as_fields() -> None:
    dispatcher = AlertDispatcher(AlertsConfig(), sinks=[])
    with structlog.testing.capture_logs() as logs:
        dispatcher.alert("account_failed", "f1 failed", {"account": "f1", "error": "archived"})
        bus.emit("foreign_copier", "labelled by another copier", {"account": "f2", "receiver": 1})
    assert [(e["event"], e["cause"], e["account"]) for e in logs] == [
        ("alert", "account_failed", "f1"),
        ("alert", "foreign_copier", "f2"),
    ]
    assert logs[0]["error"] == "archived" and logs[1]["detail_receiver"] == 1

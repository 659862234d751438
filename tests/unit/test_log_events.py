"""Logs are data: a log line's event is a fixed name, its values are fields with one name each.

A line like "copying: buy 10000000 cents of EURUSD" cannot be selected by name (every line is
a new event) and its numbers cannot be read without parsing prose; "copy sent" with
``symbol``, ``side``, ``volume`` and ``lots`` fields can. The rules: tests/unit/source_rules.py.
"""

from __future__ import annotations

from .source_rules import Finding, log_findings, package_modules

# Files whose owner is still converting them (empty: every module of cmamd/ is checked).
BEING_CONVERTED: frozenset[str] = frozenset()
# Passes its caller's event on (the caller's line is the one checked).
WRAPPERS = frozenset(
    {
        "cmamd/log_limits.py",
        # logs the planner's PlanNote events: literals at each plan.note(...) call
        "cmamd/replication/plan_notes.py",
    }
)


def problems(source: str) -> list[str]:
    return [finding.problem for finding in log_findings(source)]


def test_every_log_line_of_cmamd_names_its_event_and_uses_the_canonical_fields() -> None:
    modules = package_modules()
    failing: dict[str, list[Finding]] = {}
    for path, source in modules.items():
        found = log_findings(source)
        if found and path not in WRAPPERS:
            failing[path] = found
    new = {path: found for path, found in failing.items() if path not in BEING_CONVERTED}
    assert not new, new
    # The list names only files that still fail, so the integrator sees when it may go.
    assert sorted(BEING_CONVERTED - failing.keys()) == []


def test_an_event_with_values_in_it_is_refused() -> None:
    assert problems('log.info(f"copying {side}")')
    assert problems('log.info("copying: buy 10000000 cents of EURUSD")')
    assert problems('log.info("copying %s", side)')
    assert problems('self._log.warning("retry in 5 s")')
    assert problems('log.error("order refused; retrying later")')
    assert problems('log.info("copy " + outcome)')
    assert problems('log_method("copy " + outcome)')
    assert problems('log.bind(account="a").info("sent {}".format(n))')


def test_a_fixed_event_with_its_values_in_fields_passes() -> None:
    assert problems('log.info("copy sent", symbol="EURUSD", volume=10, lots="0.0001")') == []
    assert problems('self._log.bind(account="a").warning("account unavailable", code="X")') == []
    assert problems('log.exception("listener failed", error=str(exc))') == []
    # not a logger
    assert problems('plan.note(f"copying {x}")') == []


def test_an_event_from_a_table_of_literals_is_checked_like_a_literal() -> None:
    table = 'EVENTS = {Outcome.DONE: "copy done", Outcome.REJECTED: "copy rejected"}\n'
    assert problems(table + "log_method(EVENTS[outcome], rule=rule)") == []
    assert problems('READY = "account ready"\nlog.info(READY)') == []
    bad = 'EVENTS = {1: "copy done", 2: "copy: rejected"}\nlog.info(EVENTS[n])'
    assert problems(bad) == [
        "event 'copy: rejected' carries values or a detail (put them in fields)"
    ]
    assert problems('EVENTS = {1: "copy done", 2: text}\nlog.info(EVENTS[n])') == [
        "event is not a plain string literal"
    ]


def test_a_sentence_for_an_event_is_refused() -> None:
    assert problems('log.info("open with an unknown outcome confirmed by the order history today")')


def test_a_synonym_of_a_canonical_field_is_refused() -> None:
    assert problems('log.info("x", acct="a")') == ["field 'acct': write 'account'"]
    assert problems('log.info("x", follower_name="f")') == [
        "field 'follower_name': write 'follower'"
    ]
    assert problems('log.info("x", conn_id=3)') == ["field 'conn_id': write 'connection'"]
    assert problems('log.info("x", errorCode="E")') == ["field 'errorCode': write 'code'"]


def test_a_synonym_bound_as_context_is_refused() -> None:
    assert problems('self._log = get_logger("x").bind(acct=name)') == [
        "field 'acct': write 'account'"
    ]
    assert problems("bind_contextvars(conn_id=3)") == ["field 'conn_id': write 'connection'"]
    assert problems('log.bind(account="a").info("account ready")') == []


def test_a_volume_goes_with_its_lots() -> None:
    assert problems('log.info("copy sent", volume=100)') == ["field 'volume' without 'lots'"]

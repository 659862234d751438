"""systemd's STATUS= line from the daemon's facts."""

from __future__ import annotations

from cmamd.daemon.status_line import StatusFacts, status_line


def test_a_quiet_daemon_says_accounts_copies_and_queue() -> None:
    facts = StatusFacts(
        accounts_ready=2, accounts_total=3, copies_done=5, copies_rejected=1, queue_depth=0
    )
    assert status_line(facts) == "accounts 2/3 ready; copies 5 done, 1 rejected; queue 0"


def test_what_needs_the_operator_follows_in_a_fixed_order() -> None:
    facts = StatusFacts(
        accounts_ready=1,
        accounts_total=4,
        copies_done=0,
        copies_rejected=0,
        queue_depth=2,
        equity_stopped=["r:f1"],
        needs_reauth=["f2", "f3"],
        frozen=["f4"],
        not_ready="not ready: f5 (starting)",
        store_fault="OperationalError: disk full",
        extra="last reload rejected",
    )
    assert status_line(facts) == (
        "accounts 1/4 ready; copies 0 done, 0 rejected; queue 2; EQUITY STOP: r:f1; "
        "NEEDS RE-AUTHORISATION (cmamd auth): f2, f3; FROZEN, another cmamd copies onto: f4; "
        "not ready: f5 (starting); STATE STORE FAULT: OperationalError: disk full; "
        "last reload rejected"
    )

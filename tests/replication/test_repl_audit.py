from __future__ import annotations

from cmamd.replication.audit import describe, findings
from cmamd.replication.intents import CancelPendingOrder, ClosePosition, KeyPlan, PlanNote


def test_findings_are_plans_with_work_for_keys_nobody_is_working_on() -> None:
    orphan = KeyPlan("p1", [ClosePosition(2, "p1", 50, 100_000)])
    busy = KeyPlan("o2", [CancelPendingOrder(2, "o2", 60)])
    quiet = KeyPlan("p3", [], None, [PlanNote("copy waiting", "nothing to do")])
    found = findings([orphan, busy, quiet], busy_keys={"o2"})
    assert found == [orphan]
    assert describe(orphan) == ["ClosePosition"]

"""The planner's notes (why a plan decided what it did) as log lines, written once the
orders are out. Each note's event is a fixed name chosen where the planner calls
``plan.note(...)`` (intents.PlanNote), so this is the one place a log event is not a literal.
"""

from __future__ import annotations

from cmamd.logs import get_logger
from cmamd.replication.intents import KeyPlan
from cmamd.replication.routes import CopyRoute

log = get_logger("cmamd.replication")

QUIET_NOTES = frozenset({"copy planned"})
"""Notes the copy's own outcome line ("copy done", with action, volume and lots) repeats:
logged at debug, so that a copy costs one info line, not two."""


def log_notes(route: CopyRoute, plan: KeyPlan) -> None:
    for note in plan.notes:
        log_method = log.debug if note.event in QUIET_NOTES else log.info
        log_method(
            note.event,  # a fixed name chosen by the planner (intents.PlanNote)
            reason=note.reason,
            rule=route.target.rule,
            follower=route.follower,
            master_item=plan.key,
            **note.fields,
        )

from __future__ import annotations

from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.settled import SettledItems


def _link(key: str, status: LinkStatus, updated_ms: int) -> Link:
    return Link("r", 1, 2, key, status, updated_ms=updated_ms)


def test_only_finished_links_are_kept_and_pruned_once_old_and_gone_from_the_master() -> None:
    settled = SettledItems()
    settled.load(
        "d",
        [
            _link("p1", LinkStatus.CLOSED, 100),
            _link("p2", LinkStatus.OPEN, 100),
            _link("p3", LinkStatus.SKIPPED, 100),
            _link("p4", LinkStatus.REJECTED, 900),
        ],
    )
    assert settled.get("d", "p2") is None and len(settled) == 3
    on_master = {"p3"}
    expired = settled.expired(500, lambda _dest, key: key in on_master)
    assert [(dest, link.key) for dest, link in expired] == [("d", "p1")]
    assert settled.expired(500, lambda _dest, _key: None) == [], "master unknown: keep all"

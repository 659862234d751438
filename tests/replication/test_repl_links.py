from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from cmamd.replication.links import Link, LinkStatus


def a_link(**changes: Any) -> Link:
    fields: dict[str, Any] = {
        "rule": "main",
        "master_account_id": 1001,
        "follower_account_id": 2002,
        "key": "p7",
        "status": LinkStatus.OPEN,
        "master_volume": 10_000_000,
        "follower_volume": 5_000_000,
        "master_sl": 1.08765,
        "master_tp": None,
        "origin_key": "o3",
        "seq": 2,
        "reason": "",
        "updated_ms": 1_700_000_000_123,
    }
    fields.update(changes)
    return Link(**fields)


def test_a_link_survives_json_exactly() -> None:
    link = a_link(master_tp=0.1 + 0.2, fill_key=None)
    restored = Link.from_dict(json.loads(json.dumps(link.to_dict())))
    assert restored == link
    assert restored.master_tp == 0.1 + 0.2  # not 0.3: the float is kept bit for bit
    assert link.to_dict()["status"] == "open"


def test_missing_optional_fields_take_defaults() -> None:
    minimal = {
        "rule": "r",
        "master_account_id": 1,
        "follower_account_id": 2,
        "key": "o9",
        "status": "skipped",
    }
    link = Link.from_dict(minimal)
    assert link.status is LinkStatus.SKIPPED
    assert (link.seq, link.master_volume, link.reason, link.fill_key) == (0, 0, "", None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "half-open"),
        ("master_volume", True),  # a flag where a volume belongs is a corrupt record
        ("master_volume", 1.5),
        ("master_sl", "1.1"),
        ("key", "x1"),
        ("origin_key", 5),
        ("rule", None),
    ],
)
def test_corrupt_records_are_refused(field: str, value: object) -> None:
    data = a_link().to_dict()
    data[field] = value
    with pytest.raises(ValueError):
        Link.from_dict(data)


def test_unknown_and_missing_required_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        Link.from_dict({**a_link().to_dict(), "extra": 1})
    data = a_link().to_dict()
    del data["follower_account_id"]
    with pytest.raises(ValueError, match="missing"):
        Link.from_dict(data)


def test_evolution_helpers_stamp_the_time() -> None:
    link = a_link(status=LinkStatus.OPENING)
    assert link.opened(5).status is LinkStatus.OPEN and link.opened(5).updated_ms == 5
    rejected = link.rejected("NOT_ENOUGH_MONEY", 6)
    assert (rejected.status, rejected.reason, rejected.updated_ms) == (
        LinkStatus.REJECTED,
        "NOT_ENOUGH_MONEY",
        6,
    )
    assert link.closed(7, "gone").status is LinkStatus.CLOSED
    assert link.advanced(3, 8).seq == link.seq + 3
    rebased = link.rebased(4, 2, 9)
    assert (rebased.master_volume, rebased.follower_volume) == (4, 2)
    mirrored = link.mirrored(1.0, 2.0, 10)
    assert (mirrored.master_sl, mirrored.master_tp, mirrored.updated_ms) == (1.0, 2.0, 10)


def test_only_opening_and_open_are_active() -> None:
    active = {status for status in LinkStatus if status.active}
    assert active == {LinkStatus.OPENING, LinkStatus.OPEN}
    assert a_link(status=LinkStatus.CLOSED).active is False


def test_a_link_cannot_be_built_inconsistent() -> None:
    with pytest.raises(ValueError):
        a_link(key="p")
    with pytest.raises(ValueError):
        a_link(seq=-1)


def test_unconfirmed_levels_survive_a_round_trip_and_the_default_is_not_written() -> None:
    link = a_link()
    assert "levels_confirmed" not in link.to_dict()
    pending = dataclasses.replace(link, levels_confirmed=False)
    assert Link.from_dict(json.loads(json.dumps(pending.to_dict()))) == pending
    with pytest.raises(ValueError):
        Link.from_dict({**link.to_dict(), "levels_confirmed": 1})

"""A destination's persisted marks: since when it copies (moved by a return from frozen),
and its equity-stop latch (held across recovery and unrelated edits, re-armed by its own
block). The decisions are pure (replication/); the store only keeps what they return."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cmamd.config.diff import fingerprint_of
from cmamd.config.rules import CopyMode, Destination, EquityStop
from cmamd.replication.equity_stop import latch_held
from cmamd.replication.routes_from_config import copying_since
from cmamd.state.marks import DestinationMarks, MarkStore
from cmamd.state.store import StateStore

DEST = "main:1:2"
ON, FROZEN, CLOSE_ONLY = CopyMode.ON, CopyMode.FROZEN, CopyMode.CLOSE_ONLY


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as opened:
        yield opened


def dest(**keys: Any) -> Destination:
    return Destination.model_validate({"account": "follower", **keys})


class Marks:
    """copying_since over a run of starts and reloads, its marks carried from one to the next."""

    def __init__(self) -> None:
        self.marks = DestinationMarks()

    def since(self, mode: CopyMode, now_ms: int) -> int:
        started, self.marks = copying_since(self.marks, mode, now_ms)
        return started


def test_the_first_start_is_kept_while_the_mode_stays_on() -> None:
    marks = Marks()
    assert marks.since(ON, 1_000) == 1_000
    assert marks.since(ON, 9_000) == 1_000
    assert marks.since(CLOSE_ONLY, 9_500) == 1_000


def test_a_return_from_frozen_moves_the_start_once() -> None:
    marks = Marks()
    assert marks.since(ON, 1_000) == 1_000
    assert marks.since(FROZEN, 2_000) == 1_000
    assert marks.since(FROZEN, 3_000) == 1_000  # a reload
    assert marks.marks.frozen_since_ms == 2_000
    assert marks.since(ON, 5_000) == 5_000  # back on
    assert marks.marks.frozen_since_ms is None
    assert marks.since(ON, 8_000) == 5_000  # stays


def test_a_destination_frozen_from_its_first_start_copies_from_its_return() -> None:
    marks = Marks()
    assert marks.since(FROZEN, 1_000) == 1_000
    assert marks.since(CLOSE_ONLY, 4_000) == 4_000


def test_the_equity_stop_latch_holds_until_its_own_block_changes() -> None:
    armed = dest(equity_stop={"below": 5000})
    assert latch_held("", armed) == ""
    latch = fingerprint_of(EquityStop(below=Decimal(5000)))
    assert latch_held(latch, armed) == latch
    # other keys of the destination: still latched
    edited = dest(equity_stop={"below": 5000}, mode="close_only", max_delay_s=5, reverse=True)
    assert latch_held(latch, edited) == latch
    # the block itself: a new threshold, or a new rearm marker, re-arms it
    assert latch_held(latch, dest(equity_stop={"below": 4000})) == ""
    rearmed = dest(equity_stop={"below": 5000, "rearm": 1})
    assert latch_held(latch, rearmed) == ""
    assert latch_held(latch, dest()) == "", "no stop configured"


def test_a_latch_from_the_whole_destination_fingerprint_is_kept_in_the_current_form() -> None:
    armed = dest(equity_stop={"below": 5000}, sides="buy")
    current = fingerprint_of(EquityStop(below=Decimal(5000)))
    assert latch_held(fingerprint_of(armed), armed) == current  # as earlier versions wrote


def test_the_marks_keep_the_keys_earlier_versions_wrote(store: StateStore) -> None:
    # a store written before the marks had a module of their own reads the same
    store.set_meta(f"started:{DEST}", "1000")
    store.set_meta(f"frozen:{DEST}", "")
    store.set_meta(f"equity-stop:{DEST}", "abc")
    store.set_meta("started:main:1:3", "2000")
    store.set_meta("frozen:main:1:3", "3000")
    marks = MarkStore(store)
    assert marks.all() == {
        DEST: DestinationMarks(started_ms=1000, frozen_since_ms=None, equity_stop="abc"),
        "main:1:3": DestinationMarks(started_ms=2000, frozen_since_ms=3000),
    }
    assert marks.of("main:1:3") == DestinationMarks(started_ms=2000, frozen_since_ms=3000)
    assert marks.of("main:9:9") == DestinationMarks()
    assert marks.equity_stops() == {DEST: "abc"}


def test_the_marks_write_what_changed_only(store: StateStore) -> None:
    marks = MarkStore(store)
    old = marks.of(DEST)
    new = DestinationMarks(started_ms=5_000, frozen_since_ms=4_000)
    marks.save(DEST, old, new)
    assert marks.of(DEST) == new
    back = DestinationMarks(started_ms=9_000)
    marks.save(DEST, new, back)
    assert marks.of(DEST) == back
    assert store.get_meta(f"frozen:{DEST}") == ""  # cleared as earlier versions did
    assert store.get_meta(f"equity-stop:{DEST}") is None  # never written: unchanged
    marks.latch_equity_stop(DEST, "fp")
    assert marks.equity_stops() == {DEST: "fp"}
    assert marks.of(DEST).equity_stop == "fp"


def test_the_rearm_marker_takes_any_scalar_and_nothing_else() -> None:
    assert EquityStop.model_validate({"below": 1, "rearm": 2}).rearm == "2"
    assert EquityStop.model_validate({"below": 1, "rearm": date(2026, 11, 27)}).rearm == (
        "2026-11-27"
    )
    assert EquityStop.model_validate({"below": 1, "rearm": "after the call"}).rearm == (
        "after the call"
    )
    with pytest.raises(ValidationError):
        EquityStop.model_validate({"below": 1, "rearm": [1]})

"""A destination's persisted marks: since when it copies (moved by a return from frozen),
and its equity-stop latch (held across recovery and unrelated edits, re-armed by its own
block)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cmamd.config.diff import fingerprint_of
from cmamd.config.rules import Destination, EquityStop
from cmamd.daemon import dest_marks
from cmamd.state.store import StateStore

DEST = "main:1:2"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as opened:
        yield opened


def dest(**keys: Any) -> Destination:
    return Destination.model_validate({"account": "follower", **keys})


def test_the_first_start_is_kept_while_the_mode_stays_on(store: StateStore) -> None:
    assert dest_marks.copying_since_ms(store, DEST, dest(), 1_000) == 1_000
    assert dest_marks.copying_since_ms(store, DEST, dest(), 9_000) == 1_000
    assert dest_marks.copying_since_ms(store, DEST, dest(mode="close_only"), 9_500) == 1_000


def test_a_return_from_frozen_moves_the_start_once(store: StateStore) -> None:
    assert dest_marks.copying_since_ms(store, DEST, dest(), 1_000) == 1_000
    frozen = dest(mode="frozen")
    assert dest_marks.copying_since_ms(store, DEST, frozen, 2_000) == 1_000
    assert dest_marks.copying_since_ms(store, DEST, frozen, 3_000) == 1_000  # a reload
    assert dest_marks.copying_since_ms(store, DEST, dest(), 5_000) == 5_000  # back on
    assert dest_marks.copying_since_ms(store, DEST, dest(), 8_000) == 5_000  # stays
    assert dest_marks.copying_since_ms(store, "main:1:3", dest(), 8_000) == 8_000  # its own


def test_a_destination_frozen_from_its_first_start_copies_from_its_return(
    store: StateStore,
) -> None:
    assert dest_marks.copying_since_ms(store, DEST, dest(mode="frozen"), 1_000) == 1_000
    assert dest_marks.copying_since_ms(store, DEST, dest(mode="close_only"), 4_000) == 4_000


def test_the_equity_stop_latch_holds_until_its_own_block_changes(store: StateStore) -> None:
    armed = dest(equity_stop={"below": 5000})
    assert not dest_marks.equity_stop_latched(store, DEST, armed)
    dest_marks.latch_equity_stop(store, DEST, armed)
    assert dest_marks.equity_stop_latched(store, DEST, armed)
    # other keys of the destination: still latched
    edited = dest(equity_stop={"below": 5000}, mode="close_only", max_delay_s=5, reverse=True)
    assert dest_marks.equity_stop_latched(store, DEST, edited)
    assert not dest_marks.equity_stop_latched(store, "main:1:3", armed), "per destination"
    # the block itself: a new threshold, or a new rearm marker, re-arms it
    assert not dest_marks.equity_stop_latched(store, DEST, dest(equity_stop={"below": 4000}))
    rearmed = dest(equity_stop={"below": 5000, "rearm": 1})
    assert not dest_marks.equity_stop_latched(store, DEST, rearmed)
    assert not dest_marks.equity_stop_latched(store, DEST, dest()), "no stop configured"
    dest_marks.latch_equity_stop(store, DEST, rearmed)  # tripped again under the new block
    assert dest_marks.equity_stop_latched(store, DEST, rearmed)
    assert not dest_marks.equity_stop_latched(store, DEST, armed)


def test_a_latch_from_the_whole_destination_fingerprint_is_kept_and_converted(
    store: StateStore,
) -> None:
    armed = dest(equity_stop={"below": 5000}, sides="buy")
    store.set_meta(f"equity-stop:{DEST}", fingerprint_of(armed))  # as earlier versions wrote
    assert dest_marks.equity_stop_latched(store, DEST, armed)
    assert store.get_meta(f"equity-stop:{DEST}") == fingerprint_of(EquityStop(below=Decimal(5000)))
    assert dest_marks.equity_stop_latched(store, DEST, dest(equity_stop={"below": 5000}))


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

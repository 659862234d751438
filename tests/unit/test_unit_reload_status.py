"""reload-status.json: what `cmamd reload` waits for."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cmamd.daemon import reload_status
from cmamd.daemon.reload_status import FILE_NAME, ReloadStatus


def test_nothing_written_yet_reads_none(tmp_path: Path) -> None:
    assert reload_status.read(tmp_path) is None


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    before = time.time()
    written = reload_status.write(
        tmp_path, ok=False, problems=["copy[0].source: unknown account", "ü"]
    )
    assert written.seq == 1 and written.ok is False
    assert before <= written.at <= time.time()
    assert reload_status.read(tmp_path) == written
    assert reload_status.read(tmp_path) == ReloadStatus(
        1, False, ["copy[0].source: unknown account", "ü"], written.at
    )


def test_seq_increments_with_every_write(tmp_path: Path) -> None:
    seqs = [
        reload_status.write(tmp_path, ok=i % 2 == 0, problems=[] if i % 2 == 0 else ["bad"]).seq
        for i in range(4)
    ]
    assert seqs == [1, 2, 3, 4]
    last = reload_status.read(tmp_path)
    assert last is not None and (last.seq, last.ok, last.problems) == (4, False, ["bad"])


def test_a_garbage_file_restarts_the_sequence(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    assert reload_status.read(tmp_path) is None
    assert reload_status.write(tmp_path, ok=True, problems=[]).seq == 1


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        "null",
        '{"seq": 1, "ok": true}',  # fields missing
        '{"seq": "x", "ok": true, "problems": [], "at": 1}',
        '{"seq": 1, "ok": true, "problems": 5, "at": 1}',
        '{"seq": 1, "ok": true, "problems": [], "at": null}',
    ],
)
def test_unusable_content_reads_none(tmp_path: Path, content: str) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    assert reload_status.read(tmp_path) is None


def test_undecodable_bytes_read_none(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"\xff\xfe\x00garbage")
    assert reload_status.read(tmp_path) is None


def test_unreadable_file_reads_none(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()  # a directory where the file should be: read() fails
    assert reload_status.read(tmp_path) is None


def test_missing_directory_reads_none(tmp_path: Path) -> None:
    assert reload_status.read(tmp_path / "nope") is None


def test_write_replaces_atomically_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reload_status.write(tmp_path, ok=True, problems=[])
    original = (tmp_path / FILE_NAME).read_text()
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def watching_replace(src: str, dst: Path) -> None:
        # at the moment of the rename: the new content is complete in the temporary file,
        # and the old file is still whole
        seen.append((Path(src).read_text(), Path(dst).read_text()))
        assert Path(src).parent == tmp_path
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    status = reload_status.write(tmp_path, ok=False, problems=["x"] * 1000)
    ((new_text, old_text),) = seen
    assert old_text == original
    assert json.loads(new_text)["seq"] == status.seq == 2
    assert json.loads(new_text)["problems"] == ["x"] * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


def test_a_failed_write_leaves_the_previous_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = reload_status.write(tmp_path, ok=True, problems=[])

    def broken_dump(*_args: object, **_kw: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        reload_status.write(tmp_path, ok=False, problems=["x"])
    monkeypatch.undo()
    assert reload_status.read(tmp_path) == first

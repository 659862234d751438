"""A kill while a copy's journal entry is only in the state store's op log (sent, not yet
in sqlite): the next start applies the log, settles the order by reconcile, and adopts
the copy; nothing is sent twice."""

from __future__ import annotations

import signal
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.replication.labels import label
from cmamd.sim import SimServer
from cmamd.sim.session import FrameEvent
from cmamd.state.store import DB_NAME
from cmamd.state.write_behind import APPLIED_KEY, LOG_NAME, parse_log

from .kit import DaemonProcess, eventually

READY = '"event": "ready"'
RULES = [{"name": "r", "source": "master", "destinations": [{"account": "follower-hedged"}]}]
ACCOUNTS = ["master", "follower-hedged"]
ATTEMPTS = 4


def _new_orders(sim: SimServer, follower: int) -> list[Any]:
    return [
        r
        for r in sim.record
        if isinstance(r.message, pb.ProtoOANewOrderReq)
        and r.message.ctidTraderAccountId == follower
    ]


async def test_a_kill_with_the_journal_entry_only_in_the_op_log_sends_nothing_twice(
    sim: SimServer, ids: dict[str, int], make_config: Any, tmp_path: Path
) -> None:
    config = make_config(ACCOUNTS, RULES)
    daemon = DaemonProcess(config, {}, tmp_path / "daemon.log")
    follower = ids["follower-hedged"]
    unapplied_at_kill: list[int] = []  # ops in the log, not in sqlite, once a kill is done

    def kill_on_the_copy(event: FrameEvent) -> None:
        # Synchronously, as the follower's order frame arrives: the daemon wrote the entry
        # a moment ago; writes gather for 100 ms before they are committed.
        if event.direction != "in" or daemon.proc is None or daemon.proc.poll() is not None:
            return
        message = codec.decode(event.frame).message
        if isinstance(message, pb.ProtoOANewOrderReq) and message.ctidTraderAccountId == follower:
            daemon.proc.send_signal(signal.SIGKILL)

    daemon.start()
    try:
        await eventually(lambda: READY in daemon.log_text(), 15, "ready")
        op_log = _op_log_of(daemon)
        sim.add_frame_listener(kill_on_the_copy)
        positions = []
        for attempt in range(1, ATTEMPTS + 1):
            positions.append(sim.place_market_order(ids["master"], "EURUSD", "buy", 100_000))
            await eventually(lambda: _dead(daemon), 10, "killed")
            sim.remove_frame_listener(kill_on_the_copy)
            unapplied_at_kill.append(_unapplied(op_log))
            daemon.start()
            await eventually(partial(_started, daemon, attempt + 1), 15, "restarted")
            if unapplied_at_kill[-1] > 0:
                break
            sim.add_frame_listener(kill_on_the_copy)
        assert unapplied_at_kill[-1] > 0, "no kill landed before the writer committed"
        assert "state op log replayed" in daemon.log_text()
        await eventually(
            lambda: len(sim.broker.positions(follower)) == len(positions), 10, "copies"
        )
        assert sorted(c.label for c in sim.broker.positions(follower)) == sorted(
            label(ids["master"], f"p{p}") for p in positions
        )
        assert len(_new_orders(sim, follower)) == len(positions)  # adopted, never resent
        assert "settled by reconcile" in daemon.log_text()  # the replayed entry was settled
        for position in positions:
            sim.close_position(ids["master"], position)
        await eventually(lambda: not sim.broker.positions(follower), 10, "copies closed")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        sim.remove_frame_listener(kill_on_the_copy)
        daemon.kill()


def _started(daemon: DaemonProcess, times: int) -> bool:
    return daemon.log_text().count(READY) == times


def _unapplied(op_log: Path) -> int:
    ops = parse_log(op_log.read_bytes(), op_log)
    db = sqlite3.connect(f"file:{op_log.with_name(DB_NAME)}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (APPLIED_KEY,)).fetchone()
    finally:
        db.close()
    applied = int(row[0]) if row else 0
    return sum(1 for seq, _ in ops if seq > applied)


def _dead(daemon: DaemonProcess) -> bool:
    return daemon.proc is not None and daemon.proc.poll() is not None


def _op_log_of(daemon: DaemonProcess) -> Path:
    found = list(daemon.config.parent.rglob(LOG_NAME))
    assert len(found) == 1, found
    return found[0]

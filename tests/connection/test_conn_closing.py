"""A server closing while requests wait for a send slot (issue 8.1): no spin, no lock-up.

The failure mode is an event loop that never yields again, which no test on the same loop
can observe (its own timeout never fires): the scenarios run in a child process
(spin_probe.py) under a deadline.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.protocol import State

from cmamd.connection.dispatch import Dispatcher
from cmamd.connection.open_socket import OpenSocket
from cmamd.connection.ratelimit import Priority, RequestThrottle, SystemClock
from cmamd.connection.sender import RequestSender
from cmamd.connection.state import READY, ConnectionState

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("spin_probe.py")


def run_probe(scenario: str) -> str:
    try:
        done = subprocess.run(
            [sys.executable, str(PROBE), scenario],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{scenario}: the client locked up (no exit in 30 s): {exc.stdout!r}")
    tail = "\n".join(done.stdout.splitlines()[-3:])
    assert done.returncode == 0, f"{scenario}: {tail}\n{done.stderr[-2000:]}"
    return tail


def test_close_frame_while_a_request_waits_for_a_slot_ends_the_link_and_resends() -> None:
    tail = run_probe("close")
    assert "outcomes=['reply', 'reply', 'reply', 'reply', 'reply', 'reply']" in tail


def test_loop_stall_past_the_servers_idle_timeout_with_a_request_queued() -> None:
    tail = run_probe("stall")
    assert "outcomes=['reply', 'reply', 'reply', 'reply', 'reply', 'reply']" in tail


def _sender_with_link(ws_state: State) -> tuple[RequestSender, ConnectionState, OpenSocket]:
    log: Any = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    state = ConnectionState(log)
    clock = SystemClock()
    sender = RequestSender(
        state, RequestThrottle(10, clock=clock), Dispatcher(log), clock, log, rate_limit_attempts=1
    )
    link = OpenSocket(SimpleNamespace(state=ws_state), 1, 0.0, 0.0, 0.0)  # type: ignore[arg-type]
    state.set_link(link)
    state.current = READY
    return sender, state, link


async def test_a_closing_socket_is_never_offered_to_a_request() -> None:
    sender, state, link = _sender_with_link(State.CLOSING)
    waiting = asyncio.create_task(sender._usable_link(Priority.QUERY))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "a closing socket was offered for sending"
    assert link.alive is False  # given up at once, not when the stream ends
    replacement, _, _ = _sender_with_link(State.OPEN)
    new_link = replacement._state.link
    assert new_link is not None
    state.set_link(new_link)
    assert await asyncio.wait_for(waiting, 1) is new_link

"""Keeping one link alive, and noticing when it is not.

The server drops clients that send nothing for a while (docs/protocol.md §3: a heartbeat at
least every 10 s), so a heartbeat goes out after half the configured interval of send
silence: the gap between two frames stays well under the interval even with timer jitter.

In the other direction, a link that received nothing for ``silence_timeout_s`` is dead. The
server's own heartbeat rate is undocumented, so after half that time a cheap request
(``ProtoOAVersionReq``) asks for an answer; a live server replies long before the deadline.

Heartbeats and probes are sent from their own tasks: a send stuck behind a full socket
buffer must not stop this loop from declaring the link dead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from cmamd.connection.open_socket import OpenSocket
from cmamd.connection.ratelimit import Clock

_MIN_SLEEP_S = 0.001


async def keep_alive(
    link: OpenSocket,
    *,
    clock: Clock,
    heartbeat_interval_s: float,
    silence_timeout_s: float,
    send_heartbeat: Callable[[OpenSocket], Coroutine[Any, Any, bool]],
    probe: Callable[[], Coroutine[Any, Any, None]],
    log: Any,
) -> None:
    """Run until ``link`` is dead: silent for too long, or a heartbeat found it closed."""
    beat_after = heartbeat_interval_s / 2
    probe_after = silence_timeout_s / 2
    beating: asyncio.Task[bool] | None = None
    probing: asyncio.Task[None] | None = None
    try:
        while link.alive:
            if beating is not None and beating.done():
                if not beating.result():
                    return
                beating = None
            now = clock.monotonic()
            quiet = now - link.last_received
            if quiet >= silence_timeout_s:
                log.warning(
                    "nothing received", next="declaring the link dead", silent_s=round(quiet, 3)
                )
                return
            beat_due = link.last_sent + beat_after
            if now >= beat_due:
                if beating is None:
                    beating = asyncio.create_task(send_heartbeat(link), name="heartbeat")
                beat_due = now + beat_after / 4  # look again soon: the send may be queued
            if probing is not None and probing.done() and quiet < probe_after:
                probing = None  # answered (or something else arrived): re-arm for next time
            if quiet >= probe_after and probing is None:
                probing = asyncio.create_task(probe(), name="liveness-probe")
            quiet_deadline = silence_timeout_s if quiet >= probe_after else probe_after
            wake_at = min(beat_due, link.last_received + quiet_deadline)
            await clock.sleep(max(wake_at - now, _MIN_SLEEP_S))
    finally:
        for task in (beating, probing):
            if task is not None and not task.done():
                task.cancel()

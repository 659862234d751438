"""Sending requests on whatever link is current, without ever duplicating one.

A request is (re)sent only while it provably never reached the server: it waits for a
usable link and a send slot, and if the link changed meanwhile it simply waits again.
Once its frame is written, the outcome is the reply, or ``OutcomeUnknown`` when the reply
does not come (timeout, link lost). The one exception is the server's rate limiter: a
request it refused was not executed, so it is sent again after ``retryAfter``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import secrets
from typing import Any

from google.protobuf.message import Message
from websockets.exceptions import ConnectionClosed

from cmamd.connection.dispatch import Dispatcher
from cmamd.connection.errors import SendTimeout
from cmamd.connection.open_socket import HEARTBEAT_FRAME, OpenSocket
from cmamd.connection.ratelimit import Clock, Priority, RequestThrottle, Slot
from cmamd.connection.state import READY, ConnectionState
from cmamd.protocol.codec import Envelope, encode
from cmamd.protocol.errors import OutcomeUnknown, RateLimited, error_from_message

DEFAULT_RETRY_AFTER_S = 1.0
"""Pause after a rate-limit refusal that does not say how long to wait."""

# Generation of the link whose session hooks run in this context. Their requests pass the
# "not ready" gate, which only opens once the hooks are done. Tasks a hook spawns inherit
# it; they act for an account the hook has just re-authorised, so that is what they need.
_HOOK_GENERATION: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "cmamd_connection_hook_generation", default=None
)


def enter_hook_context(link: OpenSocket) -> None:
    """Mark the current context (a task running session hooks) as hooks of ``link``."""
    _HOOK_GENERATION.set(link.generation)


class RequestSender:
    def __init__(
        self,
        state: ConnectionState,
        throttle: RequestThrottle,
        dispatcher: Dispatcher,
        clock: Clock,
        log: Any,
        *,
        rate_limit_attempts: int,
    ) -> None:
        if rate_limit_attempts < 1:
            raise ValueError("rate_limit_attempts must be at least 1")
        self._state = state
        self._throttle = throttle
        self._dispatcher = dispatcher
        self._clock = clock
        self._log = log
        self._rate_limit_attempts = rate_limit_attempts
        self._send_lock = asyncio.Lock()
        self._id_prefix = secrets.token_hex(2)  # tells connections apart in server logs
        self._ids = itertools.count(1)
        self.queued = 0
        """Requests not yet sent: waiting for a link or for a send slot."""

    def next_id(self) -> str:
        return f"{self._id_prefix}.{next(self._ids)}"

    async def request(
        self, message: Message, priority: Priority, timeout_s: float, account_id: int | None
    ) -> Message:
        for attempt in itertools.count(1):
            envelope = await self._exchange(message, priority, timeout_s)
            error = error_from_message(envelope.message)
            if error is None:
                return envelope.message
            if error.account_id is None:
                error.account_id = account_id
            if not isinstance(error, RateLimited) or attempt >= self._rate_limit_attempts:
                raise error
            pause_s = error.retry_after_s or DEFAULT_RETRY_AFTER_S
            self._state.counts["rate_limited"] += 1
            self._throttle.pause_for(pause_s)
            self._log.warning(
                "rate limited by the server",
                next="resending",
                request=type(message).__name__,
                code=error.code,
                pause_s=pause_s,
                attempt=attempt,
                margin_s=self._throttle.widen_margin(),
            )
        raise AssertionError("unreachable")

    async def send_heartbeat(self, link: OpenSocket) -> bool:
        """Send a heartbeat on ``link`` now; False when the link is no longer open."""
        async with self._send_lock:
            if not link.is_open():
                return False
            try:
                await link.ws.send(HEARTBEAT_FRAME)
            except ConnectionClosed:
                return False
            finally:
                self._throttle.record_unthrottled()  # counts against the budget, never waits
            link.last_sent = self._clock.monotonic()
            self._state.counts["heartbeats_sent"] += 1
        return True

    async def _exchange(self, message: Message, priority: Priority, timeout_s: float) -> Envelope:
        name = type(message).__name__
        client_msg_id = self.next_id()
        frame = encode(message, client_msg_id)  # a malformed message fails before queueing
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Envelope] = loop.create_future()
        send_deadline = loop.time() + timeout_s
        while True:
            link, slot = await self._wait_for_slot(priority, send_deadline, name, timeout_s)
            try:
                async with self._send_lock:
                    if not link.is_open() or link is not self._state.link:
                        continue  # dropped while waiting: never sent, wait for the next link
                    self._dispatcher.expect(client_msg_id, future)
                    try:
                        await link.ws.send(frame)
                    except Exception as exc:
                        self._dispatcher.forget(client_msg_id)
                        if future.done() and not future.cancelled():
                            future.exception()  # superseded by the error raised here
                        raise OutcomeUnknown(
                            f"{name} ({client_msg_id}) may have been sent when the link "
                            f"failed: {exc}"
                        ) from exc
                    finally:
                        slot.used()  # after the write: the log errs towards later times
                    link.last_sent = self._clock.monotonic()
                    self._state.counts["sent"] += 1
                break
            finally:
                slot.release()  # no-op once used
        self._log.debug("sent", request=name, client_msg_id=client_msg_id)
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise OutcomeUnknown(
                f"no reply to {name} ({client_msg_id}) within {timeout_s} s"
            ) from None
        finally:
            self._dispatcher.forget(client_msg_id)

    async def _wait_for_slot(
        self, priority: Priority, deadline: float, name: str, timeout_s: float
    ) -> tuple[OpenSocket, Slot]:
        self.queued += 1
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    link = await self._usable_link(priority)
                    slot = await self._throttle.acquire(priority)
                    if link.is_open() and link is self._state.link:
                        return link, slot
                    slot.release()
        except TimeoutError:
            why = "link down" if self._state.link is None else "waiting for send budget"
            raise SendTimeout(f"{name} not sent within {timeout_s} s ({why})") from None
        finally:
            self.queued -= 1

    async def _usable_link(self, priority: Priority) -> OpenSocket:
        while True:
            self._state.raise_if_closed()
            link = self._state.link
            if link is not None and link.is_open() and self._may_use(link, priority):
                return link
            if link is not None and link.alive and not link.is_open():
                # The socket is closing but the reader has not ended the link yet: nothing
                # more can be written on it, so stop offering it, and suspend until the
                # reader replaces it (returning it again would spin without ever yielding).
                link.alive = False
            await self._state.wait_change()

    def _may_use(self, link: OpenSocket, priority: Priority) -> bool:
        # Before ready, only session traffic (auth, token refresh) and the session hooks'
        # own requests may go: everything else waits until accounts are re-authorised.
        return (
            self._state.current == READY
            or priority <= Priority.SESSION
            or _HOOK_GENERATION.get() == link.generation
        )

"""``OpenApiConnection``: one Open API endpoint connection shared by many accounts.

It keeps one socket alive (application auth first, heartbeats, silence detection, reconnect
with backoff, session hooks that re-authorise accounts before anything else is released),
correlates replies by clientMsgId and spends the per-connection request budget in priority
order (see requests.py for the rule that keeps requests from being duplicated).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Awaitable, Callable

import structlog
from google.protobuf.message import Message
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State

from cmamd.connection.backoff import Backoff
from cmamd.connection.dispatch import Dispatcher, Listener, callable_name
from cmamd.connection.endpoint import (
    WatchedConnection,
    default_ssl_context,
    open_socket,
    parse_endpoint,
)
from cmamd.connection.errors import ConnectionClosedError
from cmamd.connection.garbage import GarbageMeter
from cmamd.connection.keepalive import keep_alive
from cmamd.connection.open_socket import OpenSocket, authenticate_app, decode_frame
from cmamd.connection.ratelimit import (
    DEFAULT_MARGIN_S,
    Clock,
    Priority,
    RequestThrottle,
    SystemClock,
)
from cmamd.connection.sender import RequestSender, enter_hook_context
from cmamd.connection.state import (
    CLOSED,
    CONNECTED,
    DISCONNECTED,
    READY,
    ConnectionState,
    StateListener,
)
from cmamd.connection.token_refresh import TokenPair, refresh_tokens
from cmamd.log_limits import LimitedLog
from cmamd.protocol.codec import ProtocolError
from cmamd.protocol.errors import APPLICATION_AUTH_CODES, OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2

__all__ = ["OpenApiConnection", "Priority", "SessionHook", "TokenPair", "refresh_tokens"]

SessionHook = Callable[["OpenApiConnection"], Awaitable[None]]

_CONNECT_ERRORS = (OSError, WebSocketException, TimeoutError, OpenApiError, ProtocolError)


class OpenApiConnection:
    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        name: str = "demo-0",
        max_rps: int = 50,
        ssl_context: ssl.SSLContext | None = None,
        request_timeout_s: float = 10.0,
        heartbeat_interval_s: float = 10.0,
        silence_timeout_s: float = 30.0,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        session_hook_timeout_s: float = 60.0,
        rate_limit_attempts: int = 3,
        rate_margin_s: float = DEFAULT_MARGIN_S,
    ) -> None:
        for setting, value in (
            ("request_timeout_s", request_timeout_s),
            ("heartbeat_interval_s", heartbeat_interval_s),
            ("silence_timeout_s", silence_timeout_s),
            ("session_hook_timeout_s", session_hook_timeout_s),
        ):
            if value <= 0:
                raise ValueError(f"{setting} must be positive, got {value}")
        self._endpoint = parse_endpoint(url)
        self._ssl = default_ssl_context(self._endpoint, ssl_context)
        self._client_id = client_id
        self._client_secret = client_secret
        self.name = name
        self._clock: Clock = clock or SystemClock()
        self._backoff = backoff or Backoff()
        self._request_timeout_s = request_timeout_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self._silence_timeout_s = silence_timeout_s
        self._hook_timeout_s = session_hook_timeout_s
        self._log = structlog.get_logger("cmamd.connection").bind(connection=name)
        self._limited_log = LimitedLog(self._log)  # for what the peer can repeat at will
        self._throttle = RequestThrottle(max_rps, margin_s=rate_margin_s, clock=self._clock)
        self._state = ConnectionState(self._log)
        self._dispatcher = Dispatcher(self._limited_log)
        self._sender = RequestSender(
            self._state,
            self._throttle,
            self._dispatcher,
            self._clock,
            self._log,
            rate_limit_attempts=rate_limit_attempts,
        )
        self._hooks: list[SessionHook] = []
        self._generations = itertools.count(1)
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, *, connect_attempts: int | None = None) -> None:
        """Return once the first session is ready (app auth and session hooks done).

        Bad credentials raise CH_CLIENT_AUTH_FAILURE at once; other failures are retried
        with backoff, forever or until ``connect_attempts`` attempts failed.
        """
        if self._supervisor is not None or self._closing:
            raise RuntimeError(f"connection {self.name} was already started")
        if connect_attempts is not None and connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1")
        self._supervisor = asyncio.create_task(
            self._supervise(connect_attempts), name=f"openapi-{self.name}"
        )
        try:
            await self.wait_ready()
        except asyncio.CancelledError:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop for good: in-flight requests get OutcomeUnknown, queued ones ConnectionClosed."""
        if self._closing:
            return
        self._closing = True
        closed = ConnectionClosedError(f"connection {self.name} closed")
        self._state.close_with(closed)
        supervisor = self._supervisor
        if supervisor is not None and not supervisor.done():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self._throttle.close(self._state.closed_error or closed)
        self._state.set(CLOSED)

    @property
    def state(self) -> str:
        return self._state.current

    @property
    def is_ready(self) -> bool:
        return self._state.is_ready

    @property
    def max_rps(self) -> int:
        return self._throttle.max_rps

    @property
    def request_timeout_s(self) -> float:
        return self._request_timeout_s

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for the ready state; raises TimeoutError, or the reason it closed."""
        async with asyncio.timeout(timeout):
            while not self._state.is_ready:
                self._state.raise_if_closed()
                await self._state.wait_change()

    @property
    def stats(self) -> dict[str, int]:
        return {
            **self._state.counts,
            "in_flight": self._dispatcher.in_flight,
            "queued": self._sender.queued,
            "throttled_waits": self._throttle.waits,
            "rate_margin_ms": round(self._throttle.margin_s * 1000),
        }

    # -- subscriptions --------------------------------------------------------------------
    def add_listener(self, callback: Listener) -> None:
        """``callback(envelope)`` for every unsolicited message and every execution event."""
        self._dispatcher.add_listener(callback)

    def remove_listener(self, callback: Listener) -> None:
        self._dispatcher.remove_listener(callback)

    def add_account_listener(self, account_id: int, callback: Listener) -> None:
        """``callback(envelope)`` for the unsolicited messages of one account (routed by id)."""
        self._dispatcher.accounts.add(account_id, callback)

    def remove_account_listener(self, account_id: int, callback: Listener) -> None:
        self._dispatcher.accounts.remove(account_id, callback)

    def add_session_hook(self, hook: SessionHook) -> None:
        """``await hook(conn)`` after each (re)connect, before other requests are released."""
        self._hooks.append(hook)

    def remove_session_hook(self, hook: SessionHook) -> None:
        if hook in self._hooks:
            self._hooks.remove(hook)

    def add_state_listener(self, callback: StateListener) -> None:
        self._state.add_listener(callback)

    def remove_state_listener(self, callback: StateListener) -> None:
        self._state.remove_listener(callback)

    # -- requests -------------------------------------------------------------------------
    async def request(
        self,
        message: Message,
        *,
        priority: Priority = Priority.QUERY,
        timeout: float | None = None,
        account_id: int | None = None,
    ) -> Message:
        """Send ``message`` and return its reply (for trades: the first execution event).

        ``timeout`` (default ``request_timeout_s``) bounds the wait to be sent (link down,
        send budget) and, separately, the wait for the reply once sent. Raises the typed
        OpenApiError of an error reply, SendTimeout (never sent, safe to retry),
        OutcomeUnknown (sent, no answer: ask the broker) or ConnectionClosedError.
        ``account_id`` fills in error replies that do not name the account.
        """
        timeout_s = self._request_timeout_s if timeout is None else timeout
        return await self._sender.request(message, priority, timeout_s, account_id)

    # -- supervision ----------------------------------------------------------------------
    async def _supervise(self, connect_attempts: int | None) -> None:
        failures = 0
        had_session = False
        while True:
            error: BaseException
            try:
                link = await self._open_link()
            except OpenApiError as exc:
                if exc.code in APPLICATION_AUTH_CODES:
                    # Retrying cannot fix credentials and would only hammer the server.
                    self._log.error(
                        "application credentials refused",
                        next="not reconnecting",
                        code=exc.code,
                        description=exc.description,
                    )
                    self._shut(exc)
                    return
                error = exc
            except _CONNECT_ERRORS as exc:
                error = exc
            else:
                failures = 0
                if had_session:
                    self._state.counts["reconnects"] += 1
                had_session = True
                await self._run_session(link)
                self._backoff.session_ended(self._clock.monotonic() - link.opened_at)
                await self._pause_before_reconnect("link lost")
                continue
            failures += 1
            if not had_session and connect_attempts is not None and failures >= connect_attempts:
                self._log.error(
                    "could not connect", next="giving up", attempts=failures, error=repr(error)
                )
                self._shut(error)
                return
            await self._pause_before_reconnect(f"connect failed: {error!r}")

    async def _pause_before_reconnect(self, reason: str) -> None:
        delay = self._backoff.next_delay()
        self._log.warning("reconnecting", reason=reason, in_s=round(delay, 3))
        await self._clock.sleep(delay)

    async def _open_link(self) -> OpenSocket:
        self._log.info("connecting", url=self._endpoint.url)
        ws = await open_socket(self._endpoint, self._ssl, self._request_timeout_s)
        try:
            slot = await self._throttle.acquire(Priority.SESSION)
            self._state.counts["sent"] += 1
            self._state.counts["received"] += await authenticate_app(
                ws,
                self._client_id,
                self._client_secret,
                self._sender.next_id(),
                slot,
                self._request_timeout_s,
                self._log,
            )
        except BaseException:
            await ws.close()
            raise
        now = self._clock.monotonic()
        link = OpenSocket(
            ws, next(self._generations), opened_at=now, last_sent=now, last_received=now
        )
        self._log.info("application authenticated", link=link.generation)
        return link

    async def _run_session(self, link: OpenSocket) -> None:
        self._state.set_link(link)
        self._state.set(CONNECTED)
        reader = asyncio.create_task(self._read(link), name=f"openapi-{self.name}-reader")
        watchdog = asyncio.create_task(
            keep_alive(
                link,
                clock=self._clock,
                heartbeat_interval_s=self._heartbeat_interval_s,
                silence_timeout_s=self._silence_timeout_s,
                send_heartbeat=self._sender.send_heartbeat,
                probe=self._probe,
                log=self._log,
            ),
            name=f"openapi-{self.name}-keepalive",
        )
        closing = asyncio.create_task(
            self._watch_closing(link), name=f"openapi-{self.name}-closing"
        )
        hooks = asyncio.create_task(self._run_hooks(link), name=f"openapi-{self.name}-hooks")
        link_tasks = {reader, watchdog, closing}
        try:
            done, _ = await asyncio.wait(link_tasks | {hooks}, return_when=asyncio.FIRST_COMPLETED)
            if not done & link_tasks:
                self._state.set(READY)
                await asyncio.wait(link_tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._end_link(link, (reader, watchdog, closing, hooks))

    async def _end_link(self, link: OpenSocket, tasks: tuple[asyncio.Task[None], ...]) -> None:
        link.alive = False
        if self._state.link is link:
            self._state.set_link(None)
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for task, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._log.error("link task failed", task=task.get_name(), exc_info=outcome)
        lost = self._dispatcher.fail_all(
            lambda: OutcomeUnknown(f"link of {self.name} lost after the request was sent")
        )
        if lost:
            self._log.warning("requests in flight when the link dropped", count=lost)
        self._state.set(CLOSED if self._closing else DISCONNECTED)
        if link.ws.state is State.CLOSING:
            # The server started the close: our answer is sent, and a server that never
            # ends the stream must not hold up the reconnect for the close timeout.
            link.ws.transport.abort()
        await link.ws.close()

    async def _watch_closing(self, link: OpenSocket) -> None:
        """End the link as soon as its closing handshake begins (see WatchedConnection)."""
        if isinstance(link.ws, WatchedConnection):
            await link.ws.closing_started.wait()
        else:
            await asyncio.Future()  # another socket type: the reader notices the end
        link.alive = False
        self._state.notify()
        self._log.warning("link closing", code=link.ws.close_code)

    async def _run_hooks(self, link: OpenSocket) -> None:
        enter_hook_context(link)  # this task's own context, inherited by the hooks' tasks
        hooks = list(self._hooks)
        if hooks:
            await asyncio.gather(*(self._run_hook(hook) for hook in hooks))

    async def _run_hook(self, hook: SessionHook) -> None:
        try:
            async with asyncio.timeout(self._hook_timeout_s):
                await hook(self)
        except Exception as exc:
            # One account's failed re-auth must not keep the others from trading.
            self._log.error("session hook failed", hook=callable_name(hook), error=repr(exc))

    async def _read(self, link: OpenSocket) -> None:
        garbage = GarbageMeter()
        try:
            async for frame in link.ws:
                link.last_received = self._clock.monotonic()
                self._state.counts["received"] += 1
                envelope = decode_frame(frame, self._limited_log)
                if envelope is None:
                    self._state.counts["bad_frames"] += 1
                    if garbage.bad_frame(link.last_received):
                        self._log.error("burst of undecodable frames", next="dropping the link")
                        return
                    continue
                self._dispatcher.dispatch(envelope)
                if isinstance(envelope.message, messages_pb2.ProtoOAClientDisconnectEvent):
                    self._log.warning(
                        "server disconnected the client", reason=envelope.message.reason
                    )
                    return
        except ConnectionClosed as exc:
            self._log.warning("link closed", code=exc.rcvd.code if exc.rcvd else None)
            return
        self._log.warning("link closed by the server")

    async def _probe(self) -> None:
        try:
            await self.request(
                messages_pb2.ProtoOAVersionReq(),
                priority=Priority.SESSION,
                timeout=self._silence_timeout_s / 2,
            )
        except Exception as exc:
            self._log.info("liveness probe unanswered", error=repr(exc))

    def _shut(self, error: BaseException) -> None:
        self._state.close_with(error)
        self._throttle.close(error)
        self._state.set(CLOSED)

"""``SimServer``: the simulated Open API over WebSocket (ws, or wss given an SSL context).

One binary frame is one serialized ``ProtoMessage`` (no length prefix); ``FramePipeline``
handles each. The server owns the connections (heartbeats, idle timeout), the market
ticker (price walk, GTD expiry), and the controls tests use: prices, faults, the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from cmamd.protocol import codec
from cmamd.protocol.proto import common_pb2, messages_pb2
from cmamd.sim.broker import AccountEvent, Broker
from cmamd.sim.config import SimConfig, TradingMode
from cmamd.sim.faults import Faults
from cmamd.sim.handlers import Handlers, Outbox
from cmamd.sim.manual import ManualTrading
from cmamd.sim.market import Market, PriceChange
from cmamd.sim.oauth import OAuthSettings, OAuthStandIn
from cmamd.sim.pipeline import FramePipeline
from cmamd.sim.protos import spot_event
from cmamd.sim.receipt import ReceiptStampedConnection, stamped_connection_class
from cmamd.sim.session import ConnectionInfo, FrameEvent, FrameListener, RecordedRequest, Session
from cmamd.sim.token_store import TokenStore

log = structlog.get_logger("cmamd.sim")
Sleep = Callable[[float], Awaitable[Any]]
# Frames up to this size are read so that an oversized one can be answered with
# FRAME_TOO_LONG; beyond it the WebSocket layer itself closes the connection (1009).
_READ_LIMIT = 4 * codec.MAX_FRAME_BYTES


class SimServer(ManualTrading):
    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config if config is not None else SimConfig.default()
        self.market = Market(self.config.brokers, self.config.seed)
        self.broker = Broker(self.config, self.market, clock)
        self.tokens = TokenStore(
            self.config.ctids, seed=self.config.seed, ttl_s=self.config.token_ttl_s, clock=clock
        )
        self.connections: list[ConnectionInfo] = []
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._sessions: dict[int, Session] = {}
        self._faults = Faults()
        self._handlers = Handlers(
            self.config, self.market, self.broker, self.tokens, self._sessions, self._faults
        )
        self._pipeline = FramePipeline(
            self.config, self._handlers, self._faults, clock=clock, monotonic=monotonic
        )
        self.oauth = OAuthStandIn(
            OAuthSettings(
                client_id=self.config.client_id,
                client_secret=self.config.client_secret,
                redirect_uris=list(self.config.redirect_uris),
                grant_ctid=self.config.grant_ctid or self.config.ctids[0].name,
            ),
            self.tokens,
            clock=clock,
            on_rotated=self._on_tokens_rotated,
        )
        self._conn_ids = itertools.count(1)
        self._frame_listeners: list[FrameListener] = []
        self._prices_paused = False
        self._ws: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._url: str | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        *,
        http_port: int = 0,
    ) -> None:
        """Serve the Open API on ``port`` and the OAuth pages on ``http_port`` (0: any)."""
        if self._ws is not None:
            raise RuntimeError("already started")
        self._ws = await serve(
            self._serve_connection,
            host,
            port,
            ssl=ssl_context,
            max_size=_READ_LIMIT,
            # Liveness is the Open API heartbeat's job: no WebSocket pings to lean on.
            ping_interval=None,
            compression=None,
            create_connection=stamped_connection_class(self._monotonic),
        )
        self.port = next(iter(self._ws.sockets)).getsockname()[1]
        scheme = "wss" if ssl_context is not None else "ws"
        shown_host = f"[{host}]" if ":" in host else host
        self._url = f"{scheme}://{shown_host}:{self.port}"
        self._ticker = asyncio.create_task(self._tick())
        await self.oauth.start(host, http_port, ssl_context)

    async def stop(self) -> None:
        await self.oauth.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
            self._ws = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    def describe(self) -> dict[str, Any]:
        """Endpoint, app credentials and every account with its current tokens (JSON-ready)."""
        accounts = []
        for ctid_config in self.config.ctids:
            for account in ctid_config.accounts:
                ctid = self.tokens.ctid_of(account.account_id)
                accounts.append(
                    {
                        "name": account.name,
                        "account_id": account.account_id,
                        "ctid": ctid.name,
                        "is_live": account.is_live,
                        "kind": account.kind,
                        "broker": account.broker,
                        "trader_login": account.trader_login,
                        "balance": float(self.broker.trader(account.account_id).balance),
                        "deposit_asset": account.deposit_asset,
                        "money_digits": account.money_digits,
                        "access_token": ctid.access_token,
                        "refresh_token": ctid.refresh_token,
                        "symbols": [s.name for s in self.market.symbols(account.broker)],
                    }
                )
        return {
            "url": self.url,
            "environment": self.config.environment,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "accounts": accounts,
            **self.oauth.describe(),
        }

    # --- market control ---------------------------------------------------------------

    def set_price(self, name: str, bid: float, ask: float, broker: str | None = None) -> None:
        """Quote ``name`` (on ``broker``, or every broker listing it); fills what crosses."""
        self._publish(self.market.set_price(name, bid, ask, broker))

    def set_trading_mode(self, name: str, mode: TradingMode, broker: str | None = None) -> None:
        """Switch a symbol to another trading mode; clients get ProtoOASymbolChangedEvent."""
        for broker_name, symbol_id in self.market.set_trading_mode(name, mode, broker):
            for session in self._sessions.values():
                for account_id in sorted(session.info.authorised_accounts):
                    if self.broker.trader(account_id).broker == broker_name:
                        session.send(
                            messages_pb2.ProtoOASymbolChangedEvent(
                                ctidTraderAccountId=account_id, symbolId=[symbol_id]
                            )
                        )

    def pause_prices(self) -> None:
        self._prices_paused = True

    def resume_prices(self) -> None:
        self._prices_paused = False

    def run_timers(self) -> None:
        """Expire GTD orders now (the ticker also does it every ``timer_interval_s``)."""
        self.broadcast(self.broker.expire_orders())

    # --- fault injection --------------------------------------------------------------

    def drop_connections(self, account_id: int | None = None) -> int:
        """Abort connections (all, or where ``account_id`` is authorised); returns how many."""
        dropped = [
            s for s in self._sessions.values() if account_id is None or s.is_authorised(account_id)
        ]
        for session in dropped:
            session.abort()
        return len(dropped)

    def close_connections(self, code: int = 1001, reason: str = "going away") -> int:
        """Send a close frame on every connection (after what is queued); returns how many."""
        sessions = list(self._sessions.values())
        for session in sessions:
            session.close_after_flush(code, reason)
        return len(sessions)

    def close_after_next(self, n: int, payload_types: Iterable[int] | None = None) -> None:
        """Close the requester's connection right after the replies to its next ``n``
        requests (of those types): a server dropping a busy connection mid-copy."""
        self._faults.close_after_left = n
        self._faults.close_after_types = (
            frozenset(payload_types) if payload_types is not None else None
        )

    def delay_responses(self, seconds: float, payload_types: Iterable[int] | None = None) -> None:
        """Hold back what requests (of those types) send to their requester; 0 turns it off."""
        self._faults.delay_s = seconds
        self._faults.delay_types = frozenset(payload_types) if payload_types is not None else None

    def swallow_next(self, n: int, payload_types: Iterable[int] | None = None) -> None:
        self._faults.swallow_left = n
        self._faults.swallow_types = frozenset(payload_types) if payload_types is not None else None

    def lose_next_requests(self, n: int, payload_types: Iterable[int] | None = None) -> None:
        """The next ``n`` requests (of those types) never reach the server: no effect, no reply.

        Unlike ``swallow_next`` (acted on, answer lost), a client that retries is safe here.
        """
        self._faults.lost_requests_left = n
        self._faults.lost_request_types = (
            frozenset(payload_types) if payload_types is not None else None
        )

    def reject_next_orders(
        self, n: int, code: str = "TRADING_DISABLED", account_id: int | None = None
    ) -> None:
        self._faults.reject_left = n
        self._faults.reject_code = code
        self._faults.reject_account = account_id

    def reject_after_accept_next(
        self, n: int, code: str = "NOT_ENOUGH_MONEY", account_id: int | None = None
    ) -> None:
        """Accept the next ``n`` new orders, then reject them with ``code`` (no fill)."""
        self._faults.late_reject_left = n
        self._faults.late_reject_code = code
        self._faults.late_reject_account = account_id

    def invalidate_token(self, account_id: int) -> None:
        """Revoke the access token of the account's cTID (a refresh still works)."""
        ctid = self.tokens.revoke_access(account_id)
        self._run_exchange(
            lambda outbox: self._handlers.invalidate(
                outbox, ctid.account_ids, "Access token was revoked"
            )
        )

    def _on_tokens_rotated(self, account_ids: frozenset[int], reason: str) -> None:
        self._run_exchange(lambda outbox: self._handlers.invalidate(outbox, account_ids, reason))

    def disconnect_account(self, account_id: int, *, silently: bool = False) -> None:
        """End the account's session on every connection (AccountDisconnectEvent).

        ``silently``: the event is lost on the way, so the client learns of it only when
        its next request for the account gets ACCOUNT_NOT_AUTHORIZED.
        """
        for session in self._sessions.values():
            if session.is_authorised(account_id):
                session.deauthorise(account_id)
                if not silently:
                    session.send(
                        messages_pb2.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=account_id)
                    )

    def maintenance(self, until_ms: int | None) -> None:
        """While set (and before ``until_ms``), new sessions get SERVER_IS_UNDER_MAINTENANCE."""
        self._pipeline.maintenance_until = until_ms

    # --- frame hook -------------------------------------------------------------------

    def add_frame_listener(self, listener: FrameListener) -> None:
        """``listener(FrameEvent)`` for every frame received and every frame written.

        Timestamps are taken at the socket: as a frame is handed over by the WebSocket
        layer, and once a frame's write returned. Listeners run on the server's loop and
        must be quick (benchmarks append to a list and decode later).
        """
        self._frame_listeners.append(listener)

    def remove_frame_listener(self, listener: FrameListener) -> None:
        if listener in self._frame_listeners:
            self._frame_listeners.remove(listener)

    def _frame_event(self, direction: str, conn_id: int, frame: bytes) -> None:
        event = FrameEvent(direction, conn_id, self._monotonic(), frame)
        for listener in list(self._frame_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("frame listener failed")

    def _frame_written(self, conn_id: int, frame: bytes) -> None:
        if self._frame_listeners:
            self._frame_event("out", conn_id, frame)

    # --- record -----------------------------------------------------------------------

    @property
    def record(self) -> list[RecordedRequest]:
        """Every frame received, in order (heartbeats included)."""
        return self._pipeline.record

    @property
    def rate_limit_rejections(self) -> int:
        return self._pipeline.rate_limit_rejections

    def max_requests_in_any_window(self, conn_id: int, window_s: float = 1.0) -> int:
        times = [
            r.at
            for r in self.record
            if r.conn_id == conn_id and r.payload_type != codec.HEARTBEAT_PAYLOAD_TYPE
        ]
        best = start = 0
        for end, at in enumerate(times):
            while at - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best

    # --- connections ------------------------------------------------------------------

    async def _serve_connection(self, connection: ServerConnection) -> None:
        address = connection.remote_address
        remote = f"{address[0]}:{address[1]}" if address else "?"
        info = ConnectionInfo(next(self._conn_ids), self._monotonic(), remote)
        session = Session(info, connection, self._monotonic(), self._frame_written)
        self.connections.append(info)
        self._sessions[info.conn_id] = session
        log.info("sim connection opened", connection=info.conn_id, remote=remote)
        writer = asyncio.create_task(session.run_writer())
        keepalive = asyncio.create_task(self._keepalive(session))
        try:
            async for frame in connection:
                if session.closing:  # decided to close: what arrives now is not acted on
                    break
                received_at = _received_at(connection, self._monotonic)
                session.last_received = self._monotonic()
                if self._frame_listeners and isinstance(frame, bytes):
                    # handled now: the hook's times stay those of the frames the simulator
                    # writes (stamped once written), so latencies between them stay fair
                    self._frame_event("in", info.conn_id, frame)
                self._pipeline.on_frame(session, frame, received_at)
                # Let the loop read the socket before the next queued frame is handled, so
                # that what arrives meanwhile is stamped when it arrives (receipt.py).
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            keepalive.cancel()
            del self._sessions[info.conn_id]
            info.closed_at = self._monotonic()
            log.info(
                "sim connection closed",
                connection=info.conn_id,
                code=connection.close_code,
                account_ids=sorted(info.authorised_accounts),
            )
            if not session.closing:
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(writer, keepalive)

    async def _keepalive(self, session: Session) -> None:
        """Heartbeat every ``heartbeat_interval_s``; close after ``idle_timeout_s`` of silence."""
        interval = self.config.heartbeat_interval_s
        next_beat = self._monotonic() + interval
        while True:
            now = self._monotonic()
            idle_deadline = session.last_received + self.config.idle_timeout_s
            if now >= idle_deadline:
                session.close_after_flush(1000, "idle timeout")
                return
            if now >= next_beat:
                session.send(common_pb2.ProtoHeartbeatEvent())
                next_beat = now + interval
            await self._sleep(max(0.0, min(next_beat, idle_deadline) - now))

    # --- events -----------------------------------------------------------------------

    def broadcast(self, events: list[AccountEvent]) -> None:
        """Send engine events (no requester) to every connection where the account is authorised."""
        self._run_exchange(lambda outbox: self._handlers.fan_out(outbox, events))

    def _run_exchange(self, fill: Callable[[Outbox], None]) -> None:
        outbox = Outbox()
        fill(outbox)
        for session, message in outbox.out:
            session.send(message)

    def _publish(self, changes: list[PriceChange]) -> None:
        for change in changes:
            quote = self.market.quote(change.broker, change.symbol_id)
            bid = quote.bid if change.bid_changed else None
            ask = quote.ask if change.ask_changed else None
            for session in list(self._sessions.values()):
                for account_id, symbols in session.spots.items():
                    if change.symbol_id not in symbols:
                        continue
                    if self.broker.trader(account_id).broker != change.broker:
                        continue
                    timestamp = self.broker.now_ms() if symbols[change.symbol_id] else None
                    session.send(spot_event(account_id, change.symbol_id, bid, ask, timestamp))
            self.broadcast(self.broker.on_price_change(change.broker, change.symbol_id))

    async def _tick(self) -> None:
        next_walk = self._monotonic() + self.config.price_walk_interval_s
        while True:
            await self._sleep(self.config.timer_interval_s)
            self.run_timers()
            if self._monotonic() >= next_walk:
                next_walk = self._monotonic() + self.config.price_walk_interval_s
                if self.config.price_walk and not self._prices_paused:
                    self._publish(self.market.walk())


def _received_at(connection: ServerConnection, monotonic: Callable[[], float]) -> float:
    if isinstance(connection, ReceiptStampedConnection):
        return connection.take_received_at()
    return monotonic()

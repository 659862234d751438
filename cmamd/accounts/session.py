"""One account on a shared connection: authorised, its state cached and kept current.

Start-up order: account auth, trader info, asset and symbol catalogue with full symbol
details, reconcile (open positions and pending orders); only then is the account ready,
so the copy path never has to ask the server anything but the trade itself.
Execution and trader events keep the state current and are reported as changed item keys
("p<positionId>", "o<orderId>") to whoever replicates them.

``AccountSession`` is the facade the daemon, replication and control use; the work is in
modules of one job each: ``authorisation`` (auth, token refresh and rotation),
``recovery`` (coming back after a loss, waiting for `cmamd auth`), ``catalogue_loading``,
``state_updates`` (what events and reconciles change, pure), ``order_events`` (waiting for
an order's event) and ``pnl``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from structlog.contextvars import bind_contextvars

from cmamd.accounts import wire_guard
from cmamd.accounts.authorisation import RETRYABLE_OR_REFUSED, Authoriser, is_permanent
from cmamd.accounts.catalogue import Catalogue
from cmamd.accounts.catalogue_loading import (
    load_trader_and_catalogue,
    reload_symbols,
    subscribe_conversion_quotes,
    trader_of,
)
from cmamd.accounts.model import AccountState, Quote, SymbolSpec, TraderInfo
from cmamd.accounts.order_events import OrderEvents
from cmamd.accounts.pnl import refresh_pnl_forever, unrealized_pnl
from cmamd.accounts.recovery import Recovery
from cmamd.accounts.startup import startup_for
from cmamd.accounts.state_updates import NO_ORIGINS, apply_execution, apply_reconcile
from cmamd.accounts.status import SessionStatus
from cmamd.accounts.supervision import report_task_end
from cmamd.accounts.symbol_reloads import SymbolReloads
from cmamd.accounts.timing import PRODUCTION, SessionTiming
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.connection.client import OpenApiConnection
from cmamd.connection.ratelimit import Priority
from cmamd.logs import get_logger
from cmamd.protocol.codec import Envelope
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.replies import expect_reply


class AccountChange(NamedTuple):
    """What changed on an account: item keys, and facts the copy logic needs.

    A NamedTuple: one is made per execution event, on the copy path. Read-only by contract
    (``origins`` may be a shared empty mapping)."""

    account_id: int
    keys: frozenset[str]
    received_at: float  # time.monotonic() when the event arrived
    origins: Mapping[str, str] = NO_ORIGINS  # "p<pos>" -> "o<order>" that opened it
    resync: bool = False  # a full reconcile: every key may have changed
    reducing: frozenset[str] = frozenset()  # keys whose change reduces risk: copy them first


ChangeListener = Callable[[AccountChange], None]


class AccountSession:
    def __init__(
        self,
        *,
        name: str,
        account_id: int,
        is_live: bool,
        connection: OpenApiConnection,
        tokens: TokenKeeper,
        on_change: ChangeListener,
        pnl_interval_s: float | None = None,
        conversion_quotes: bool = False,
        timing: SessionTiming = PRODUCTION,
    ) -> None:
        self.name = name
        self.account_id = account_id
        self.is_live = is_live
        self.connection = connection
        self.state = AccountState(account_id)
        self.status = SessionStatus.NEW
        self.error: str | None = None
        self.ready = asyncio.Event()
        self.catalogue = Catalogue(account_id)
        self._conversion_quotes = conversion_quotes
        self._on_change = on_change
        self._pnl_interval_s = pnl_interval_s
        self._order_events = OrderEvents()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resync_lock = asyncio.Lock()
        # keys events changed while a reconcile is in flight (None: none in flight)
        self._changed_in_flight: set[str] | None = None
        self._log = get_logger("cmamd.accounts").bind(account=name, account_id=account_id)
        self._wire = wire_guard.WireGuard(self._log)
        self._auth = Authoriser(connection, tokens, account_id, self._log, timing)
        self._recovery = Recovery(
            self,
            authoriser=self._auth,
            tokens=tokens,
            bring_up=self._bring_up,
            resync=self.resync,
            spawn=self._spawn,
            log=self._log,
            timing=timing,
        )
        self._symbol_reloads = SymbolReloads(self._reload_symbols, self._spawn)

    # lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Authorise and load everything, so that the account is ready, or failed and says why.

        A transient failure (timeout, lost link) is retried with backoff in the background;
        a permanent one (the token or the account refused) leaves the account failed.
        """
        self.status = SessionStatus.STARTING
        # This task and those it spawns log with the account bound.
        bind_contextvars(account=self.name)
        self.connection.add_account_listener(self.account_id, self._on_envelope)
        self.connection.add_session_hook(self._recovery.after_reconnect)
        try:
            await self._bring_up()
        except Exception as exc:
            if is_permanent(exc):
                self._recovery.refused(str(exc), exc)
                return
            self._auth.note_if_unauthorised(exc)
            if not isinstance(exc, RETRYABLE_OR_REFUSED):
                self._log.error(
                    "account start-up failed unexpectedly, retrying", error=repr(exc), exc_info=exc
                )
            # retried in the background; the P&L loop below must run once it succeeds
            self.error = f"start-up failed: {exc!r}"
            self._recovery.start(self.error)
        if self._pnl_interval_s:
            self._spawn(
                refresh_pnl_forever(
                    self.connection, self.state, self._pnl_interval_s, self.ready.is_set, self._log
                )
            )
        self._spawn(self._auth.rotate_when_due(self._may_rotate_tokens, self._recovery.start))

    async def _bring_up(self) -> None:
        self._recovery.bringing_up += 1
        try:
            await self._bring_up_admitted()
        finally:
            self._recovery.bringing_up -= 1

    async def _bring_up_admitted(self) -> None:
        # Admitted: start-up requests never queue longer than the budget serves them.
        async with startup_for(self.connection).admitted():
            if not self._auth.authorised:
                why = await self._auth.authorise(may_refresh=self.needs_reauth is None)
                if why is not None:
                    self._recovery.needs_reauthorisation(why, down=False)
            trader = self.state.trader
            if trader is None or not self.catalogue.loaded:
                trader = await self._load_catalogue()
            if self._conversion_quotes:
                await subscribe_conversion_quotes(
                    self.connection, self.catalogue, trader.deposit_asset_id, self._log
                )
            if self._pnl_interval_s:
                self.state.unrealized_pnl = await unrealized_pnl(self.connection, self.account_id)
            await self.resync()

    async def _load_catalogue(self) -> TraderInfo:
        trader = await load_trader_and_catalogue(
            self.connection, self.catalogue, is_live=self.is_live
        )
        self.state.trader = trader
        # the state shares the catalogue's dicts, so symbol reloads reach it too
        self.state.symbols_by_id = self.catalogue.symbols_by_id
        self.state.symbols_by_name = self.catalogue.symbols_by_name
        self._log.info(
            "catalogue loaded", symbols=len(self.catalogue.symbols_by_id), kind=trader.kind.value
        )
        return trader

    def _may_rotate_tokens(self) -> bool:
        return self.ready.is_set() and self.needs_reauth is None

    async def _reload_symbols(self, symbol_ids: list[int]) -> None:
        await reload_symbols(self.connection, self.catalogue, symbol_ids, self._log)

    async def stop(self, *, logout: bool = False) -> None:
        self.connection.remove_account_listener(self.account_id, self._on_envelope)
        self.connection.remove_session_hook(self._recovery.after_reconnect)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if logout and self.connection.is_ready:
            try:
                await self.connection.request(
                    pb.ProtoOAAccountLogoutReq(ctidTraderAccountId=self.account_id),
                    priority=Priority.SESSION,
                    timeout=5,
                )
            except Exception as exc:  # leaving anyway; the server drops it with the socket
                self._log.warning("logout failed", error=str(exc))
        self.status = SessionStatus.STOPPED
        self.ready.clear()

    async def resync(self) -> None:
        """Take the server's view of positions and orders (reconcile), merged with what
        events changed while the request was in flight (state_updates.apply_reconcile)."""
        async with self._resync_lock:
            self._changed_in_flight = set()
            try:
                res = await self.connection.request(
                    pb.ProtoOAReconcileReq(ctidTraderAccountId=self.account_id),
                    priority=Priority.QUERY,
                    account_id=self.account_id,
                )
            finally:
                changed, self._changed_in_flight = self._changed_in_flight, None
            res = expect_reply(res, pb.ProtoOAReconcileRes, "ProtoOAReconcileReq")
            self._wire.clean_reconcile(res, self.state)
            touched = apply_reconcile(self.state, res, changed)
            self.status = SessionStatus.READY
            self.error = None
            self.ready.set()
            self._log.info(
                "reconciled", positions=len(self.state.positions), orders=len(self.state.orders)
            )
            self._emit(touched, resync=True)

    # recovery (recovery.py) ------------------------------------------------------------
    @property
    def needs_reauth(self) -> str | None:
        """Why the account waits for `cmamd auth` (None: it does not)."""
        return self._recovery.needs_reauth

    def start_recovery(self, reason: str) -> None:
        """Re-authorise and reconcile in the background (the server dropped the account)."""
        self._auth.authorised = False
        self._recovery.start(reason)

    def retry_if_failed(self) -> bool:
        """Try a failed account again (SIGHUP); True when a retry was started."""
        return self._recovery.retry_if_failed()

    def retry_authorisation(self, reason: str) -> None:
        """Try again after a re-authorisation was needed (new tokens, or a reload)."""
        self._recovery.retry_authorisation(reason)

    # queries the copy path relies on (all from cache) --------------------------------
    @property
    def quotes(self) -> dict[int, Quote]:
        return self.catalogue.quotes

    def symbol(self, name: str) -> SymbolSpec | None:
        return self.state.symbols_by_name.get(name)

    def quote_to_deposit(self, spec: SymbolSpec) -> Decimal | None:
        """Rate from the symbol's quote currency to the deposit currency, if known."""
        trader = self.state.trader
        if trader is None:
            return None
        return self.catalogue.quote_to_deposit(spec, trader.deposit_asset_id)

    def order_error(self, order_id: int) -> str:
        """The error code of the order's last rejection event ("" if none was seen)."""
        return self._order_events.error_of(order_id)

    async def wait_for_order(self, order_id: int, outcomes: Iterable[int], timeout: float) -> int:
        """Wait for an execution event of ``order_id`` whose type is in ``outcomes``."""
        return await self._order_events.wait_for(order_id, outcomes, timeout)

    # events --------------------------------------------------------------------------
    def _on_envelope(self, envelope: Envelope) -> None:
        message = envelope.message
        if isinstance(message, pb.ProtoOAAccountsTokenInvalidatedEvent):
            if self.account_id in message.ctidTraderAccountIds:
                self.start_recovery(f"token invalidated: {message.reason}")
            return
        if getattr(message, "ctidTraderAccountId", None) != self.account_id:
            return
        if isinstance(message, pb.ProtoOAExecutionEvent):
            self._on_execution(message)
        elif isinstance(message, pb.ProtoOATraderUpdatedEvent):
            self.state.trader = trader_of(message.trader, self.catalogue, is_live=self.is_live)
        elif isinstance(message, pb.ProtoOASpotEvent):
            self.catalogue.on_spot(message)
        elif isinstance(message, pb.ProtoOASymbolChangedEvent):
            self._symbol_reloads.request(message.symbolId)
        elif isinstance(message, pb.ProtoOAAccountDisconnectEvent):
            self.start_recovery("account disconnected by the server")

    def _on_execution(self, event: pb.ProtoOAExecutionEvent) -> None:
        # On the copy path: check, apply, wake the order's waiter, report. Nothing else.
        if self._wire.execution_refused(event, self.state):
            return
        effect = apply_execution(self.state, event)
        if event.HasField("order"):
            self._order_events.note(event.order.orderId, event.executionType, event.errorCode)
        keys = effect.keys
        if keys:
            if self._changed_in_flight is not None:
                self._changed_in_flight.update(keys)
            self._report(
                AccountChange(
                    self.account_id, keys, time.monotonic(), effect.origins, False, effect.reducing
                )
            )

    def _emit(self, keys: frozenset[str], *, resync: bool = False) -> None:
        self._report(AccountChange(self.account_id, keys, time.monotonic(), NO_ORIGINS, resync))

    def _report(self, change: AccountChange) -> None:
        try:
            self._on_change(change)
        except Exception:
            self._log.exception("change listener failed")

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(report_task_end(self._log))
        return task

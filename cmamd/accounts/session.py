"""One account on a shared connection: authorised, its state cached and kept current.

Start-up order: account auth, trader info, asset and symbol catalogue with full symbol
details, reconcile (open positions and pending orders); only then is the account ready,
so the copy path never has to ask the server anything but the trade itself.
Execution and trader events keep the state current and are reported as changed item keys
("p<positionId>", "o<orderId>") to whoever replicates them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from structlog.contextvars import bind_contextvars

from cmamd.accounts import convert, merge, wire_guard
from cmamd.accounts.catalogue import Catalogue, fetch_broker_lists
from cmamd.accounts.model import AccountState, Quote, SymbolSpec
from cmamd.accounts.startup import startup_for
from cmamd.accounts.supervision import RetryPacing, report_task_end
from cmamd.accounts.symbol_reloads import SymbolReloads
from cmamd.accounts.token_keeper import NewTokens, TokenError, TokenKeeper, same_pair
from cmamd.connection.client import OpenApiConnection, refresh_tokens
from cmamd.connection.errors import RequestNotSent
from cmamd.connection.ratelimit import Priority
from cmamd.item_keys import ItemKind, ids_of, order_key, position_key
from cmamd.logs import get_logger
from cmamd.protocol import units
from cmamd.protocol.codec import Envelope
from cmamd.protocol.errors import APPLICATION_AUTH_CODES, OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.protocol.replies import expect_reply

TOKEN_CHECK_S = 3600.0  # expiry unknown (a bootstrap pair): look again this often
TOKEN_TIMER_MIN_S = 60.0
# What bringing an account up can raise; _is_permanent tells refusals from transients.
RETRYABLE_OR_REFUSED = (TimeoutError, OpenApiError, TokenError, OutcomeUnknown, RequestNotSent)
RECENT_ORDER_EVENTS = 512
REAUTH_WATCH_S = 30.0  # how often an account waiting for `cmamd auth` looks at the store
TOKEN_REFUSED_CODES = frozenset({"CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"})


@dataclass(frozen=True, slots=True)
class AccountChange:
    """What changed on an account: item keys, and facts the copy logic needs."""

    account_id: int
    keys: frozenset[str]
    received_at: float  # time.monotonic() when the event arrived
    origins: dict[str, str] = field(default_factory=dict)  # "p<pos>" -> "o<order>" that opened it
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
    ) -> None:
        self.name = name
        self.account_id = account_id
        self.is_live = is_live
        self.connection = connection
        self.state = AccountState(account_id)
        self.status = "new"
        self.error: str | None = None
        self.ready = asyncio.Event()
        self.catalogue = Catalogue(account_id)
        self._conversion_quotes = conversion_quotes
        self._tokens = tokens
        self._on_change = on_change
        self._pnl_interval_s = pnl_interval_s
        self._recent_orders: OrderedDict[int, int] = OrderedDict()
        self._order_errors: dict[int, str] = {}
        self._order_waiters: dict[int, list[tuple[frozenset[int], asyncio.Future[int]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resync_lock = asyncio.Lock()
        # keys events changed while a reconcile is in flight (None: none in flight)
        self._changed_in_flight: set[str] | None = None
        self._recovery: asyncio.Task[Any] | None = None
        self.needs_reauth: str | None = None  # why the account waits for `cmamd auth`
        self._reauth_watch: asyncio.Task[Any] | None = None
        self._refused_refresh: str | None = None  # the pair a new one must differ from
        # False until the server accepted the account on the current link, and again once
        # it says the authorisation is gone: only then is it worth re-authorising.
        self._authorised = False
        # >0 while the start-up chain runs: its own queued requests authorise on a new link
        self._bringing_up = 0
        self._log = get_logger("cmamd.accounts").bind(account=name, account_id=account_id)
        self._wire = wire_guard.WireGuard(self._log)
        self._symbol_reloads = SymbolReloads(self._reload_symbols, self._spawn)

    # lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Authorise and load everything, so that the account is ready, or failed and says why.

        A transient failure (timeout, lost link) is retried with backoff in the background;
        a permanent one (the token or the account refused) leaves the account failed.
        """
        self.status = "starting"
        # This task and those it spawns log with the account bound.
        bind_contextvars(account=self.name)
        self.connection.add_account_listener(self.account_id, self._on_envelope)
        self.connection.add_session_hook(self._reauthorise_hook)
        try:
            await self._bring_up()
        except Exception as exc:
            if _is_permanent(exc):
                self._refused(str(exc), exc)
                return
            self._note_if_unauthorised(exc)
            if not isinstance(exc, RETRYABLE_OR_REFUSED):
                self._log.error(
                    "account start-up failed unexpectedly, retrying", error=repr(exc), exc_info=exc
                )
            # retried in the background; the P&L loop below must run once it succeeds
            self.error = f"start-up failed: {exc!r}"
            self._start_recovery(self.error)
        if self._pnl_interval_s:
            self._spawn(self._refresh_pnl_forever(self._pnl_interval_s))
        self._spawn(self._rotate_tokens_when_due())

    async def _bring_up(self) -> None:
        # Admitted: start-up requests never queue longer than the budget serves them.
        self._bringing_up += 1
        try:
            await self._bring_up_admitted()
        finally:
            self._bringing_up -= 1

    async def _bring_up_admitted(self) -> None:
        async with startup_for(self.connection).admitted():
            if not self._authorised:
                await self._authorise()
            if not self.catalogue.loaded:
                await self._load_catalogue()
            if self._conversion_quotes:
                await self._subscribe_conversion_quotes()
            if self._pnl_interval_s:
                await self._refresh_pnl()
            await self.resync()

    def _note_if_unauthorised(self, exc: BaseException) -> None:
        if isinstance(exc, OpenApiError) and exc.session_lost:
            self._authorised = False

    @property
    def quotes(self) -> dict[int, Quote]:
        return self.catalogue.quotes

    async def stop(self, *, logout: bool = False) -> None:
        self.connection.remove_account_listener(self.account_id, self._on_envelope)
        self.connection.remove_session_hook(self._reauthorise_hook)
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
        self.status = "stopped"
        self.ready.clear()

    async def resync(self) -> None:
        """Take the server's view of positions and orders (reconcile), merged with what
        events changed while the request was in flight (merge.py)."""
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
            positions = {p.positionId: convert.position(p) for p in res.position}
            orders = {
                o.orderId: convert.pending_order(o) for o in res.order if convert.is_resting(o)
            }
            positions = merge.merge_snapshot(
                self.state.positions, positions, ids_of(changed, ItemKind.POSITION)
            )
            orders = merge.merge_snapshot(
                self.state.orders, orders, ids_of(changed, ItemKind.ORDER)
            )
            touched = (
                {position_key(i) for i in positions}
                | {position_key(i) for i in self.state.positions}
                | {order_key(i) for i in orders}
                | {order_key(i) for i in self.state.orders}
            )
            self.state.positions = positions
            self.state.orders = orders
            self.status = "ready"
            self.error = None
            self.ready.set()
            self._log.info("reconciled", positions=len(positions), orders=len(orders))
            self._emit(touched, resync=True)

    # queries the copy path relies on (all from cache) --------------------------------
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
        return self._order_errors.get(order_id, "")

    async def wait_for_order(self, order_id: int, outcomes: Iterable[int], timeout: float) -> int:
        """Wait for an execution event of ``order_id`` whose type is in ``outcomes``."""
        wanted = frozenset(outcomes)
        seen = self._recent_orders.get(order_id)
        if seen in wanted:
            return seen
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._order_waiters.setdefault(order_id, []).append((wanted, future))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._order_waiters.get(order_id, [])
            waiters[:] = [w for w in waiters if w[1] is not future]
            if not waiters:
                self._order_waiters.pop(order_id, None)

    # auth ----------------------------------------------------------------------------
    async def _authorise(self) -> None:
        before = self._tokens.current(self.account_id)
        try:
            await self._authorise_with_stored_tokens()
        except (OpenApiError, TokenError) as exc:
            if not _is_permanent(exc):
                raise
            if not same_pair(before, self._tokens.current(self.account_id)):
                pass  # a concurrent attempt stored another pair meanwhile: use that one
            elif self._tokens.adopt_bootstrap(self.account_id):
                # The stored pair is refused and the config offers another one: try it, once.
                self._log.warning(
                    "stored token pair refused; trying the bootstrap pair from the config",
                    error=str(exc),
                )
            else:
                raise
            await self._authorise_with_stored_tokens()

    async def _authorise_with_stored_tokens(self) -> None:
        if self._tokens.needs_refresh(self.account_id) and self.needs_reauth is None:
            try:
                await self._refresh_tokens()
            except OpenApiError as exc:
                if not _is_token_refusal(exc):
                    raise
                # The refresh token is dead, but the access token held may still be valid
                # until it expires: keep copying with it, and ask for `cmamd auth` now.
                await self._account_auth()
                self._needs_reauthorisation(f"refresh token refused ({exc.code})", down=False)
                return
        try:
            await self._account_auth()
        except OpenApiError as exc:
            if exc.code not in {"CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"}:
                raise
            self._log.warning("access token refused, refreshing", code=exc.code)
            await self._refresh_tokens()
            await self._account_auth()

    async def _account_auth(self) -> None:
        token = self._tokens.current(self.account_id).access_token
        try:
            await self.connection.request(
                pb.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account_id, accessToken=token),
                priority=Priority.SESSION,
            )
        except OpenApiError as exc:
            if exc.code != "ALREADY_LOGGED_IN":  # already authorised: the goal is reached
                raise
        self._authorised = True
        self._log.info("account authorised")

    async def _refresh_tokens(self) -> None:
        async def refresher(refresh_token: str) -> NewTokens:
            pair = await refresh_tokens(self.connection, refresh_token)
            return NewTokens(pair.access_token, pair.refresh_token, pair.expires_in_s)

        try:
            await self._tokens.refresh(self.account_id, refresher)
        except OutcomeUnknown as lost:
            # Sent, no answer: the server may or may not have rotated the pair. If it did
            # not, the held refresh token still works; if it did, it is refused now and the
            # caller falls back on the held access token, then asks for `cmamd auth`.
            self._log.warning("token refresh reply lost; trying the held refresh token again")
            try:
                await self.connection.wait_ready(timeout=REAUTH_WATCH_S)
            except Exception:  # link still down or closing: a transient, retried later
                raise lost from None
            await self._tokens.refresh(self.account_id, refresher)

    async def _rotate_tokens_when_due(self) -> None:
        """Rotate the token pair before it expires (a day before, or after three quarters
        of a shorter lifetime: ``tokens.refresh_margin_ms``), not when a request fails.

        The server then invalidates the old token for every account of the pair, and the
        recovery that follows re-authorises each of them with the new one.
        """
        while True:
            try:
                due = self._tokens.seconds_until_refresh(self.account_id)
            except TokenError:
                due = None
            await asyncio.sleep(max(due if due is not None else TOKEN_CHECK_S, TOKEN_TIMER_MIN_S))
            if not self.ready.is_set() or self.needs_reauth is not None:
                continue
            try:
                if self._tokens.needs_refresh(self.account_id):
                    await self._refresh_tokens()
            except Exception as exc:
                if _is_token_refusal(exc):  # settle it: the held access token, or `cmamd auth`
                    self._start_recovery(f"token rotation refused: {exc}")
                    continue
                self._log.warning("token rotation failed; retrying later", error=str(exc))

    async def _reauthorise_hook(self, _connection: OpenApiConnection) -> None:
        # Runs inside the connection's reconnect, before queued requests are released.
        self.ready.clear()
        self.status = "reauthorising"
        self._authorised = False  # a new link: the server knows no account on it yet
        if self._bringing_up:
            # The start-up chain authorises and reconciles on this link by itself (its
            # requests are released after the hooks). Doing it here too sent both twice,
            # and a hook waiting for an admission place the chain holds stalled every hook.
            return
        try:
            async with startup_for(self.connection).admitted():
                await self._account_auth()
        except Exception as exc:
            self._start_recovery(f"re-auth after reconnect failed: {exc!r}")
            return
        self._spawn(self._resync_logged())

    def retry_if_failed(self) -> bool:
        """Try a failed account again (SIGHUP); True when a retry was started."""
        if self.needs_reauth is not None and not self.ready.is_set():
            self.retry_authorisation("retry requested")
            return True
        if self.status != "failed":
            return False
        self._start_recovery(f"retry requested after: {self.error}")
        return True

    def start_recovery(self, reason: str) -> None:
        """Re-authorise and reconcile in the background (the server dropped the account)."""
        self._authorised = False
        self._start_recovery(reason)

    def _start_recovery(self, reason: str) -> None:
        # One recovery at a time: a token rotation sends several events for one cause.
        if self._recovery is None or self._recovery.done():
            self._recovery = self._spawn(self._recover(reason))

    async def _recover(self, reason: str) -> None:
        """Re-authorise and reconcile after the account was dropped or never came up."""
        self.ready.clear()
        self.status = "reauthorising"
        self._log.warning("account not available, re-authorising", reason=reason)
        pacing = RetryPacing()
        while True:
            try:
                await self._bring_up()
                if self.needs_reauth is None:
                    self._tokens.clear_needs_reauth(self.account_id)
                return
            except Exception as exc:
                if _is_permanent(exc):
                    self._refused(f"cannot authorise: {exc}", exc)
                    return
                self._note_if_unauthorised(exc)
                delay = pacing.next_delay()
                self.error = f"retrying: {exc!r}"
                if isinstance(exc, RETRYABLE_OR_REFUSED):
                    self._log.warning("authorisation failed, retrying", error=str(exc), in_s=delay)
                else:  # not a failure we know: say so loudly, and still come back
                    self._log.error(
                        "account start-up failed unexpectedly, retrying",
                        error=repr(exc),
                        in_s=delay,
                        exc_info=exc,
                    )
                await asyncio.sleep(delay)

    async def _resync_logged(self) -> None:
        try:
            async with startup_for(self.connection).admitted():
                await self.resync()
        except Exception as exc:
            self._log.error("reconcile after reconnect failed", error=str(exc))
            await self._recover(f"reconcile failed: {exc}")

    # catalogue -----------------------------------------------------------------------
    async def _load_catalogue(self) -> None:
        trader_res = expect_reply(
            await self.connection.request(
                pb.ProtoOATraderReq(ctidTraderAccountId=self.account_id), priority=Priority.QUERY
            ),
            pb.ProtoOATraderRes,
            "ProtoOATraderReq",
        )
        lists = await startup_for(self.connection).broker_lists(
            trader_res.trader.brokerName,
            lambda: fetch_broker_lists(self.connection.request, self.account_id),
        )
        await self.catalogue.load(self.connection.request, lists)
        self._set_trader(trader_res.trader)
        # the state shares the catalogue's dicts, so symbol reloads reach it too
        self.state.symbols_by_id = self.catalogue.symbols_by_id
        self.state.symbols_by_name = self.catalogue.symbols_by_name
        assert self.state.trader is not None  # set by _set_trader above
        self._log.info(
            "catalogue loaded",
            symbols=len(self.catalogue.symbols_by_id),
            kind=self.state.trader.kind.value,
        )

    async def _subscribe_conversion_quotes(self) -> None:
        assert self.state.trader is not None
        try:
            count = await self.catalogue.subscribe_conversion_quotes(
                self.connection.request, self.state.trader.deposit_asset_id
            )
        except OpenApiError as exc:
            if exc.code != "ALREADY_SUBSCRIBED":  # the server kept them: what we wanted
                raise
            return
        self._log.info("conversion quotes subscribed", symbols=count)

    async def _reload_symbols(self, symbol_ids: list[int]) -> None:
        try:
            names = await self.catalogue.reload(self.connection.request, symbol_ids)
        except Exception as exc:  # the old specs stay; the next change event tries again
            self._log.warning("symbol details refresh failed", error=str(exc))
            return
        if names:
            self._log.info("symbol details refreshed", symbols=names)

    def _set_trader(self, trader: model_pb2.ProtoOATrader) -> None:
        info = convert.trader_info(trader, is_live=self.is_live)
        deposit = self.catalogue.asset_names.get(trader.depositAssetId, "")
        self.state.trader = replace(info, deposit_asset=deposit)

    async def _refresh_pnl(self) -> None:
        res = expect_reply(
            await self.connection.request(
                pb.ProtoOAGetPositionUnrealizedPnLReq(ctidTraderAccountId=self.account_id),
                priority=Priority.BACKGROUND,
            ),
            pb.ProtoOAGetPositionUnrealizedPnLRes,
            "ProtoOAGetPositionUnrealizedPnLReq",
        )
        digits = res.moneyDigits if res.HasField("moneyDigits") else 2
        total = sum(p.netUnrealizedPnL for p in res.positionUnrealizedPnL)
        self.state.unrealized_pnl = units.money(total, digits)

    async def _refresh_pnl_forever(self, interval_s: float) -> None:
        # Equity (balance + unrealised P&L) feeds equity sizing and equity stops; it is kept
        # current here, off the copy path, which must never wait for a request of its own.
        while True:
            await asyncio.sleep(interval_s)
            if not self.ready.is_set():
                continue
            try:
                # admitted like start-up work: a thousand equity accounts ask more often than
                # the budget serves, and unadmitted they would time out waiting for it
                async with startup_for(self.connection).admitted():
                    await self._refresh_pnl()
            except Exception as exc:
                self._log.warning("unrealised P&L refresh failed", error=str(exc))

    # events --------------------------------------------------------------------------
    def _on_envelope(self, envelope: Envelope) -> None:
        message = envelope.message
        if isinstance(message, pb.ProtoOAAccountsTokenInvalidatedEvent):
            if self.account_id in message.ctidTraderAccountIds:
                self._authorised = False
                self._start_recovery(f"token invalidated: {message.reason}")
            return
        if getattr(message, "ctidTraderAccountId", None) != self.account_id:
            return
        if isinstance(message, pb.ProtoOAExecutionEvent):
            self._on_execution(message)
        elif isinstance(message, pb.ProtoOATraderUpdatedEvent):
            self._set_trader(message.trader)
        elif isinstance(message, pb.ProtoOASpotEvent):
            self.catalogue.on_spot(message)
        elif isinstance(message, pb.ProtoOASymbolChangedEvent):
            self._symbol_reloads.request(message.symbolId)
        elif isinstance(message, pb.ProtoOAAccountDisconnectEvent):
            self._authorised = False
            self._start_recovery("account disconnected by the server")

    def _on_execution(self, event: pb.ProtoOAExecutionEvent) -> None:
        if self._wire.execution_refused(event, self.state):
            return
        keys: set[str] = set()
        origins: dict[str, str] = {}
        reducing: set[str] = set()
        if event.HasField("position"):
            pos = event.position
            key = position_key(pos.positionId)
            if pos.positionStatus == model_pb2.POSITION_STATUS_OPEN:
                # stale and replayed events were refused above (wire_guard)
                before = self.state.positions.get(pos.positionId)
                after = self.state.positions[pos.positionId] = convert.position(pos)
                keys.add(key)
                if before is not None and after.volume < before.volume:
                    reducing.add(key)  # a partial close
            elif pos.positionStatus in (
                model_pb2.POSITION_STATUS_CLOSED,
                model_pb2.POSITION_STATUS_ERROR,
            ):
                self.state.positions.pop(pos.positionId, None)
                keys.add(key)
                reducing.add(key)
        if event.HasField("order"):
            order = event.order
            key = order_key(order.orderId)
            if convert.is_resting(order):
                self.state.orders[order.orderId] = convert.pending_order(order)
                keys.add(key)
            elif self.state.orders.pop(order.orderId, None) is not None:
                keys.add(key)
                if event.executionType in (model_pb2.ORDER_CANCELLED, model_pb2.ORDER_EXPIRED):
                    reducing.add(key)
            if (
                event.executionType == model_pb2.ORDER_FILLED
                and order.orderType in convert.PENDING_KINDS
                and event.HasField("position")
            ):
                origins[position_key(event.position.positionId)] = key
            self._note_order_event(order.orderId, event.executionType, event.errorCode)
        if event.HasField("deal") and event.deal.HasField("closePositionDetail"):
            detail = event.deal.closePositionDetail
            trader = self.state.trader
            if trader is not None:
                digits = (
                    detail.moneyDigits if detail.HasField("moneyDigits") else trader.money_digits
                )
                self.state.trader = replace(trader, balance=units.money(detail.balance, digits))
        if keys:
            if self._changed_in_flight is not None:
                self._changed_in_flight.update(keys)
            self._emit(keys, origins=origins, reducing=reducing)

    def _note_order_event(self, order_id: int, execution_type: int, error_code: str = "") -> None:
        if error_code:  # the broker's reason, for an order accepted and then rejected
            self._order_errors[order_id] = error_code
            while len(self._order_errors) > RECENT_ORDER_EVENTS:
                del self._order_errors[next(iter(self._order_errors))]
        self._recent_orders[order_id] = execution_type
        self._recent_orders.move_to_end(order_id)
        while len(self._recent_orders) > RECENT_ORDER_EVENTS:
            self._recent_orders.popitem(last=False)
        for wanted, future in self._order_waiters.get(order_id, []):
            if execution_type in wanted and not future.done():
                future.set_result(execution_type)

    def _emit(
        self,
        keys: Iterable[str],
        *,
        origins: dict[str, str] | None = None,
        resync: bool = False,
        reducing: Iterable[str] = (),
    ) -> None:
        change = AccountChange(
            self.account_id,
            frozenset(keys),
            time.monotonic(),
            origins or {},
            resync,
            frozenset(reducing),
        )
        try:
            self._on_change(change)
        except Exception:
            self._log.exception("change listener failed")

    # re-authorisation -------------------------------------------------------------------
    def _refused(self, reason: str, exc: BaseException) -> None:
        if _is_token_refusal(exc):
            self._needs_reauthorisation(reason, down=True)
        else:
            self._fail(reason)

    def _needs_reauthorisation(self, reason: str, *, down: bool) -> None:
        """Only this account (and those sharing its pair) stop; the others keep copying.

        The mark is persisted for `cmamd accounts`; a new pair in the store (`cmamd auth`,
        also while the daemon runs) or a reload brings the account back.
        """
        self.needs_reauth = reason
        if down:
            self.status = "needs re-authorisation"
            self.error = reason
            self.ready.clear()
        try:
            self._refused_refresh = self._tokens.stored_refresh_token(self.account_id)
            self._tokens.mark_needs_reauth(self.account_id, reason)
        except Exception as exc:  # the log line below still reports it
            self._log.warning("cannot persist the re-authorisation mark", error=str(exc))
        self._log.error(
            "account needs re-authorisation",
            reason=reason,
            still_copying=not down,
            fix="run `cmamd auth --config <config>` for the cTrader ID of this account, "
            "then `systemctl reload cmamd`",
        )
        if self._reauth_watch is None or self._reauth_watch.done():
            self._reauth_watch = self._spawn(self._watch_for_new_tokens())

    async def _watch_for_new_tokens(self) -> None:
        while self.needs_reauth is not None:
            await asyncio.sleep(REAUTH_WATCH_S)
            try:
                stored = self._tokens.stored_refresh_token(self.account_id)
            except Exception as exc:
                self._log.warning("cannot read the state store", error=str(exc))
                continue
            if stored and stored != self._refused_refresh:
                self.retry_authorisation("new tokens in the state store")

    def retry_authorisation(self, reason: str) -> None:
        """Try again after a re-authorisation was needed (new tokens, or a reload)."""
        if self.needs_reauth is None:
            return
        self.needs_reauth = None
        self._start_recovery(reason)

    # helpers -------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        self.status = "failed"
        self.error = reason
        self.ready.clear()
        self._log.error("account unavailable", reason=reason)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(report_task_end(self._log))
        return task


def _is_token_refusal(exc: BaseException) -> bool:
    """The account's token pair is refused: only a new authorisation (`cmamd auth`) helps."""
    return isinstance(exc, TokenError) or (
        isinstance(exc, OpenApiError) and exc.code in TOKEN_REFUSED_CODES
    )


def _is_permanent(exc: BaseException) -> bool:
    """The server refused the token or the account: retrying cannot help."""
    return isinstance(exc, TokenError) or (
        isinstance(exc, OpenApiError)
        and (exc.account_refused or exc.code in APPLICATION_AUTH_CODES)  # the app itself
    )

"""The replicator: master changes in, follower orders out, each persisted before it is sent.

Around the pure planner it does the I/O: it takes a work key from the queue, plans it
against the cached account states, writes the link and a journal entry in one
transaction, sends the request, and waits for the follower's execution event. A definite
rejection is journaled and not retried; an unknown outcome (timeout, disconnect) is
settled by reconciling the follower account, twice with a pause between, before the key
is planned again — never by resending blindly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from structlog.contextvars import bound_contextvars

from cmamd.accounts.session import AccountChange, AccountSession
from cmamd.accounts.supervision import RetryPacing
from cmamd.connection.errors import RequestNotSent
from cmamd.item_keys import ItemKind, split_key
from cmamd.logs import get_logger
from cmamd.protocol.errors import OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.replication import audit, confirm, identity, settled, trade_requests
from cmamd.replication.intents import (
    ClosePosition,
    Intent,
    KeyPlan,
    OpenPosition,
    PlacePendingOrder,
)
from cmamd.replication.labels import parse_label
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.planner import CopyTarget, keys_for, origins_for, plan_key
from cmamd.replication.queue import ReplicationQueue, WorkKey
from cmamd.replication.settled import SettledItems
from cmamd.replication.store_fault import StoreFault, is_store_error, requeue_into
from cmamd.state.store import StateStore

log = get_logger("cmamd.replication")

MAX_ROUNDS_PER_TAKE = 4
"""Plan/execute rounds for one key before yielding: convergence takes 1-2 in practice."""
RETRY_LATER_CODES = frozenset(
    {"MARKET_CLOSED", "SYMBOL_HAS_HOLIDAY", "TRADING_DISABLED", "NO_QUOTES"}
)
"""Refusals of a close/amend/cancel that pass with time: retried, or a close would be missed.
A refused *open* is never retried: by the time the market opens the trade is stale."""
RETRY_FIRST_S = 30.0
RETRY_MAX_S = 300.0
SETTLE_RETRY_MAX_S = 30.0  # between reconciles of an unsettled outcome


@dataclass(frozen=True, slots=True)
class CopyReport:
    """One follower action, for logs, STATUS and the demo's live view."""

    rule: str
    follower: str
    key: str
    action: str
    summary: str  # e.g. "open buy 1.2 lots EURUSD"
    volume: int | None
    outcome: str  # done | rejected | unknown | deferred
    latency_ms: float
    detail: str = ""


@dataclass(slots=True)
class Stats:
    done: int = 0
    rejected: int = 0
    unknown: int = 0
    deferred: int = 0  # not executed (the account was de-authorised); planned again


@dataclass(frozen=True, slots=True)
class CopyRoute:
    """A configured copy target with the names the logs use."""

    id: str  # "rule:master id:follower id"
    target: CopyTarget
    master: str
    follower: str


class Replicator:
    def __init__(
        self,
        store: StateStore,
        sessions: Mapping[str, AccountSession],
        *,
        workers: int = 32,
        order_timeout_s: float = 15.0,
        settle_s: float = 2.0,
        on_report: Callable[[CopyReport], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._destinations: dict[str, CopyRoute] = {}
        self.queue = ReplicationQueue()
        self.stats = Stats()
        self._workers = workers
        self._order_timeout_s = order_timeout_s
        self._settle_s = settle_s
        self._on_report = on_report
        self._wall_clock = wall_clock
        self._accepting = True
        self._tasks: list[asyncio.Task[None]] = []
        # Write-through caches of the store, so planning reads no disk.
        self._links: dict[str, dict[str, Link]] = {}
        # Finished items (closed, skipped, rejected): never decided again (settled.py).
        self._settled = SettledItems()
        self._origins: dict[int, dict[str, str]] = {}
        # follower symbol ids with an open/placement in flight, per destination and key
        self._opening: dict[str, dict[str, int]] = {}
        self._retry_delays: dict[WorkKey, float] = {}
        self._replans: set[asyncio.Task[None]] = set()  # keys waiting for a link to send on
        self._busy: set[WorkKey] = set()  # being worked on by a worker right now
        self.audit_interval_s = 180.0
        self._auditing = False
        self.instance = identity.instance_id(store)
        self._copiers = identity.CopierWatch(self.instance)
        self.store_fault = StoreFault(requeue_into(self.queue.push))

    # configuration ---------------------------------------------------------------------
    def set_destinations(self, destinations: list[CopyRoute]) -> None:
        """Swap the rule set atomically; the next planned key uses the new one."""
        destinations = [
            dataclasses.replace(d, target=dataclasses.replace(d.target, instance=self.instance))
            for d in destinations
        ]
        new = {d.id: d for d in destinations}
        for gone in set(self._destinations) - set(new):
            self.queue.discard_destination(gone)
            self._links.pop(gone, None)
            self._settled.drop_destination(gone)
        for dest in destinations:
            t = dest.target
            if dest.id not in self._links:
                stored = self._store.links(
                    rule=t.rule,
                    master_id=t.master_account_id,
                    follower_id=t.follower_account_id,
                    include_closed=True,
                )
                loaded = [Link.from_dict(d) for d in stored]
                self._links[dest.id] = {link.key: link for link in loaded if link.active}
                self._settled.load(dest.id, loaded)
            if t.master_account_id not in self._origins:
                prefix = f"origin:{t.master_account_id}:"
                self._origins[t.master_account_id] = {
                    k[len(prefix) :]: v for k, v in self._store.meta_items(prefix).items()
                }
        self._destinations = new
        self._copiers.watch(
            (
                d.target.follower_account_id,
                d.target.master_account_id,
                d.follower,
                self._sessions[d.follower].connection,
            )
            for d in destinations
            if d.follower in self._sessions
        )
        for dest in destinations:
            self.resync_destination(dest.id)

    def resync_destination(self, dest_id: str) -> None:
        dest = self._destinations.get(dest_id)
        if dest is None:
            return
        master, follower = self._sessions[dest.master], self._sessions[dest.follower]
        if not (master.ready.is_set() and follower.ready.is_set()):
            return  # planned in full when both accounts report their resync
        links = self._links[dest.id]
        origins = self._origins_for(dest, master)
        now = time.monotonic()
        keys = keys_for(dest.target, master.state, follower.state, links, origins)
        if self._auditing:
            self._log_findings(dest, keys, origins)
        # a liquidating destination (equity stop, ctl flatten) only closes and cancels
        urgent = dest.target.liquidate
        for key in keys:
            self.queue.push((dest.id, dest.target.follower_account_id, key), at=now, urgent=urgent)

    # another copier on our followers (identity.py) -----------------------------------
    @property
    def frozen(self) -> dict[int, str]:
        """Follower account id -> why it is frozen (another copier works on it)."""
        return self._copiers.frozen

    def frozen_followers(self) -> list[str]:
        return self._copiers.frozen_names()

    # periodic light reconcile (audit.py) ---------------------------------------------
    def start_audit(self, interval_s: float) -> None:
        self.audit_interval_s = interval_s
        self._tasks.append(
            asyncio.create_task(audit.audit_forever(lambda: self.audit_interval_s, self.audit))
        )

    async def audit(self) -> int:
        """Reconcile every ready account; each key that then needs work is logged and
        repaired (the reconcile re-plans every key). Returns how many accounts answered."""
        masters = {dest.master for dest in self._destinations.values()}
        self._auditing = True
        try:
            return await audit.reconcile_accounts(list(self._sessions.values()), masters)
        finally:
            self._auditing = False

    def _log_findings(self, dest: CopyRoute, keys: list[str], origins: dict[str, str]) -> None:
        master, follower = self._sessions[dest.master], self._sessions[dest.follower]
        opening = self._opening.get(dest.id, {})

        def plan_of(key: str) -> KeyPlan:
            return plan_key(
                dest.target,
                key,
                master.state,
                follower.state,
                self._link_of(dest.id, key),
                self._now_ms(),
                origins,
                follower.quote_to_deposit,
                busy_symbols=frozenset(v for k, v in opening.items() if k != key),
            )

        busy = {key for (dest_id, _, key) in self._busy if dest_id == dest.id}
        audit.log_findings(dest.target.rule, dest.follower, keys, busy, plan_of)

    # intake ----------------------------------------------------------------------------
    def on_change(self, change: AccountChange) -> None:
        """Called by account sessions for every state change (synchronously)."""
        for pkey, okey in change.origins.items():
            self._store.set_meta(f"origin:{change.account_id}:{pkey}", okey)
            self._origins.setdefault(change.account_id, {})[pkey] = okey
        for dest in self._destinations.values():
            target = dest.target
            if change.account_id == target.master_account_id:
                if not self._accepting:
                    continue
                if change.resync:
                    self.resync_destination(dest.id)
                    continue
                for key in change.keys:
                    self.queue.push(
                        (dest.id, target.follower_account_id, key),
                        at=change.received_at,
                        urgent=key in change.reducing,  # a close/cancel overtakes queued opens
                    )
            elif change.account_id == target.follower_account_id:
                if change.resync:
                    self.resync_destination(dest.id)
                    continue
                follower = self._sessions[dest.follower].state
                for key in self._follower_keys(change.keys, follower, target.master_account_id):
                    self.queue.push(
                        (dest.id, target.follower_account_id, key), at=change.received_at
                    )

    async def confirm_unfinished_opens(self, now_ms: int) -> int:
        """Before start-up planning: opens from before a crash that the broker's order history
        shows executed get their link confirmed OPEN (confirm.py); returns how many."""
        confirmed = await confirm.confirm_after_restart(
            self._store, self._sessions.values(), now_ms
        )
        return len(confirmed)

    def settle_open_intents(self) -> int:
        """After a crash: intents sent (or about to be) whose outcome was never recorded.

        Called once the followers have been reconciled at start-up: what the broker holds is
        now the truth, and the planner works from it, so each such entry is marked resolved
        (the order either exists, labelled, and is adopted, or never happened).
        """
        settled = 0
        ready = {s.account_id for s in self._sessions.values() if s.ready.is_set()}
        for entry in self._store.open_intents():
            if entry.follower_id not in ready:
                continue  # settled on a later start, once that account is reachable
            self._store.journal_outcome(
                entry.intent_id, "resolved", "outcome settled by reconciling at start-up"
            )
            log.warning(
                "unfinished order from before a restart settled by reconcile",
                follower_id=entry.follower_id,
                master_item=entry.key,
                action=entry.action,
                client_order_id=entry.client_order_id,
            )
            settled += 1
        return settled

    @property
    def live_links(self) -> int:
        """Links held in memory: items still open on a master, or still being settled."""
        return sum(len(links) for links in self._links.values())

    def stop_intake(self) -> None:
        """On shutdown: master changes are no longer turned into work."""
        self._accepting = False

    # running ---------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self._workers)]

    async def drain(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.queue.wait_idle(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        for task in [*self._tasks, *self._replans]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._replans, return_exceptions=True)
        self._tasks = []

    async def _worker(self, number: int) -> None:
        while True:
            work, since = await self.queue.take()
            self._busy.add(work)
            try:
                await self._process(work, since)
                self.store_fault.succeeded(work)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_store_error(exc):  # not sent: planned again once the store works
                    self.store_fault.failed(work, exc)
                else:
                    log.exception("replication step failed", work=list(work))
            finally:
                self._busy.discard(work)
                self.queue.done(work)

    async def _process(self, work: WorkKey, since: float) -> None:
        dest = self._destinations.get(work[0])
        if dest is None:
            return
        # Every line logged while this item is worked on (connection layer included) says
        # which rule, follower and master item it is about.
        with bound_contextvars(rule=dest.target.rule, follower=dest.follower, master_item=work[2]):
            await self._process_bound(work, since)

    async def _process_bound(self, work: WorkKey, since: float) -> None:
        dest_id, _, key = work
        for _ in range(MAX_ROUNDS_PER_TAKE):
            dest = self._destinations.get(dest_id)
            if dest is None:
                return
            master, follower = self._sessions[dest.master], self._sessions[dest.follower]
            if not (master.ready.is_set() and follower.ready.is_set()):
                return  # both re-plan everything on their resync
            if dest.target.follower_account_id in self.frozen:
                return  # another copier works on it: never fight it
            links = self._links[dest_id]
            link = links.get(key)
            from_settled = link is None and (link := self._settled.get(dest_id, key)) is not None
            opening = self._opening.setdefault(dest_id, {})
            plan = plan_key(
                dest.target,
                key,
                master.state,
                follower.state,
                link,
                self._now_ms(),
                self._origins_for(dest, master),
                follower.quote_to_deposit,
                busy_symbols=frozenset(v for k, v in opening.items() if k != key),
                link_of=partial(self._link_of, dest_id),
            )
            if from_settled and plan.link is not None:
                self._settled.forget(dest_id, key)  # decided anew (e.g. copies adopted)
            for note in plan.notes:
                log.info(note, rule=dest.target.rule, follower=dest.follower, master_item=key)
            if not plan.intents:
                if plan.link is not None and plan.link != link:
                    self._save_link(dest_id, plan.link)
                self._forget_if_done(dest_id, key, plan.link or link, master)
                return
            if not await self._execute(dest, plan, since):
                return
            since = time.monotonic()

    async def _execute(self, dest: CopyRoute, plan: KeyPlan, since: float) -> bool:
        """Send the plan's intents in order; False when the key must wait for new facts."""
        follower = self._sessions[dest.follower]
        link = plan.link
        opening = self._opening.setdefault(dest.id, {})
        for intent in plan.intents:
            intent_id = uuid.uuid4().hex
            action = type(intent).__name__
            self._store.record_intent(
                link.to_dict() if link else None,
                intent_id,
                dest.target.follower_account_id,
                plan.key,
                action,
                getattr(intent, "client_order_id", None),
                _payload(intent),
            )
            if link is not None:
                self._links[dest.id][plan.key] = link
            summary = trade_requests.summarize(
                intent, follower.state.symbols_by_id, follower.state.positions
            )
            opens = isinstance(intent, OpenPosition | PlacePendingOrder)
            if isinstance(intent, OpenPosition | PlacePendingOrder):
                opening[plan.key] = intent.symbol_id
            try:
                outcome, detail, filled = await self._send(follower, intent)
            finally:
                opening.pop(plan.key, None)
            if outcome == "not_sent":
                # never left the process: nothing to settle, the key is planned afresh
                self._replan_when_connected(dest, plan.key, follower)
                outcome = "deferred"
            latency_ms = (time.monotonic() - since) * 1000
            # The link's confirmed outcome is written before the journal entry is closed:
            # killed in between, the open entry is settled at start-up from the link (and
            # the order history); the other way round an executed open would stay OPENING
            # with a closed entry, and be made again if its copy was closed meanwhile.
            if link is not None and opens and link.status is LinkStatus.OPENING:
                if outcome == "done" and (filled or isinstance(intent, PlacePendingOrder)):
                    link = link.opened(self._now_ms())
                    self._save_link(dest.id, link)
                elif outcome == "rejected":
                    self._save_link(dest.id, link.rejected(detail, self._now_ms()))
            journaled = "rejected" if outcome == "deferred" else outcome
            self._store.journal_outcome(intent_id, journaled, detail)
            self._report(dest, plan.key, intent, summary, outcome, latency_ms, detail)
            if outcome == "done":
                self._retry_delays.pop((dest.id, dest.target.follower_account_id, plan.key), None)
                continue
            if outcome == "deferred":
                return False
            if outcome == "rejected":
                if intent.reduces_risk and detail in RETRY_LATER_CODES:
                    self._retry_later(dest, plan.key, detail)
                return False
            await self._settle(follower)
            if opens and link is not None and link.status is LinkStatus.OPENING:
                await self._confirm_open(dest, follower, link, intent)
            self._store.journal_outcome(intent_id, "resolved", "settled by reconciling the account")
            return True
        return True

    async def _confirm_open(
        self, dest: CopyRoute, follower: AccountSession, link: Link, intent: Intent
    ) -> None:
        """An open with an unknown outcome whose copy the reconcile does not show: it may
        have filled and been closed since; the order history tells (confirm.py)."""
        current = self._links.get(dest.id, {}).get(link.key)
        if current is None or current.status is not LinkStatus.OPENING:
            return
        now = self._now_ms()
        client_order_id = getattr(intent, "client_order_id", "")
        if await confirm.executed(follower, client_order_id, type(intent).__name__, now):
            log.warning(
                "open with an unknown outcome confirmed by the order history",
                follower=dest.follower,
                master_item=link.key,
                client_order_id=client_order_id,
            )
            self._save_link(dest.id, current.opened(now))

    async def _send(self, follower: AccountSession, intent: Intent) -> tuple[str, str, bool]:
        """(outcome, detail, filled): outcome is done, rejected, unknown, deferred or
        not_sent (the request never left the process: safe to plan again)."""
        request = trade_requests.build_request(intent)
        try:
            reply = await follower.connection.request(
                request,
                priority=trade_requests.priority_of(intent),
                account_id=intent.follower_account_id,
            )
        except OutcomeUnknown as exc:
            return "unknown", str(exc) or "no answer", False
        except RequestNotSent as exc:
            return "not_sent", f"not sent: {exc or type(exc).__name__}", False
        except OpenApiError as exc:
            gone = {"POSITION_NOT_FOUND", "POSITION_NOT_OPEN"}
            if isinstance(intent, ClosePosition) and exc.code in gone:
                return "done", f"already closed ({exc.code})", False
            if exc.session_lost:
                # Not executed: the account's session is gone. Once it is re-authorised
                # and reconciled, every key of the account is planned again.
                follower.start_recovery(f"{exc.code} on a trade request")
                return "deferred", exc.code, False
            return "rejected", exc.code, False
        if not isinstance(reply, pb.ProtoOAExecutionEvent):  # a wrong reply proves nothing
            return "unknown", f"unexpected reply {type(reply).__name__}", False
        if not reply.HasField("order"):
            return "done", "", False
        wanted = trade_requests.completion_types(intent)
        try:
            result = (
                reply.executionType
                if reply.executionType in wanted
                else await follower.wait_for_order(
                    reply.order.orderId, wanted, self._order_timeout_s
                )
            )
        except TimeoutError:
            return "unknown", f"no outcome for order {reply.order.orderId}", False
        if result in trade_requests.REJECTED:
            code = reply.errorCode or follower.order_error(reply.order.orderId)
            return "rejected", code or "ORDER_REJECTED", False
        if result == model_pb2.ORDER_CANCELLED and isinstance(intent, OpenPosition):
            return "done", "cancelled unfilled (slippage or liquidity)", False
        return "done", "", result == model_pb2.ORDER_FILLED

    async def _settle(self, follower: AccountSession) -> None:
        """Ask the broker what happened, twice, so a late-arriving order is seen too.

        The second reconcile is retried until it succeeds: planning this key again from a
        view that may miss the copy is how an open gets duplicated."""
        await self._reconcile(follower)
        await asyncio.sleep(self._settle_s)
        pacing = RetryPacing(first_s=self._settle_s, max_s=SETTLE_RETRY_MAX_S)
        while not await self._reconcile(follower):
            await asyncio.sleep(pacing.next_delay())

    @staticmethod
    async def _reconcile(follower: AccountSession) -> bool:
        try:
            await follower.ready.wait()
            await follower.resync()
            return True
        except Exception as exc:
            log.warning(
                "reconcile after unknown outcome failed", error=str(exc), account=follower.name
            )
            return False

    # helpers ---------------------------------------------------------------------------
    def _retry_later(self, dest: CopyRoute, key: str, code: str) -> None:
        """Plan ``key`` again after a growing pause (30 s doubling to 5 min), indefinitely."""
        work = (dest.id, dest.target.follower_account_id, key)
        delay = min(self._retry_delays.get(work, RETRY_FIRST_S / 2) * 2, RETRY_MAX_S)
        self._retry_delays[work] = delay
        log.warning(
            "risk-reducing order refused; retrying later",
            code=code,
            in_s=delay,
            rule=dest.target.rule,
            follower=dest.follower,
            master_item=key,
        )
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: self.queue.push(work, at=time.monotonic(), urgent=True))

    def _replan_when_connected(self, dest: CopyRoute, key: str, follower: AccountSession) -> None:
        """Plan ``key`` again once the follower's link is up and the account ready."""
        work = (dest.id, dest.target.follower_account_id, key)

        async def replan() -> None:
            try:
                await follower.connection.wait_ready()
            except Exception as exc:  # closed for good (shutdown, account removed)
                log.warning("not planned again: the link closed", error=str(exc), work=list(work))
                return
            await follower.ready.wait()
            self.queue.push(work, at=time.monotonic())

        task = asyncio.create_task(replan())
        self._replans.add(task)
        task.add_done_callback(self._replans.discard)

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _forget_if_done(
        self, dest_id: str, key: str, link: Link | None, master: AccountSession
    ) -> None:
        """Move a finished item's link from the live links to the settled ones.

        Without this the live links, and every plan's walk over them, grow with the history
        of all trades ever copied; the settled ones are only looked up by key.
        """
        if link is None or link.active:
            return
        kind, item_id = split_key(key)
        items = master.state.positions if kind is ItemKind.POSITION else master.state.orders
        if item_id not in items:
            self._links.get(dest_id, {}).pop(key, None)
            self._settled.remember(dest_id, link)

    def prune_settled(self, cutoff_ms: int) -> int:
        """Forget settled links older than ``cutoff_ms`` whose master item is gone."""

        def master_has(dest_id: str, key: str) -> bool | None:
            dest = self._destinations.get(dest_id)
            master = self._sessions.get(dest.master) if dest is not None else None
            if master is None or not master.ready.is_set():
                return None
            kind, item_id = split_key(key)
            items = master.state.positions if kind is ItemKind.POSITION else master.state.orders
            return item_id in items

        configured = [
            (d.target.rule, d.target.master_account_id, d.target.follower_account_id)
            for d in self._destinations.values()
        ]
        return settled.prune(self._store, self._settled, configured, cutoff_ms, master_has)

    def _link_of(self, dest_id: str, key: str) -> Link | None:
        return self._links.get(dest_id, {}).get(key) or self._settled.get(dest_id, key)

    def _save_link(self, dest_id: str, link: Link) -> None:
        self._store.put_link(link.to_dict())
        self._links.setdefault(dest_id, {})[link.key] = link

    def _origins_for(self, dest: CopyRoute, master: AccountSession) -> dict[str, str]:
        return origins_for(
            master.state,
            self._links[dest.id].values(),
            self._origins.get(dest.target.master_account_id),
        )

    @staticmethod
    def _follower_keys(keys: frozenset[str], follower: Any, master_id: int) -> set[str]:
        found: set[str] = set()
        for key in keys:
            kind, item_id = split_key(key)
            items = follower.positions if kind is ItemKind.POSITION else follower.orders
            item = items.get(item_id)
            parsed = parse_label(item.label) if item is not None else None
            if parsed is not None and parsed[0] == master_id:
                found.add(parsed[1])
        return found

    def _report(
        self,
        dest: CopyRoute,
        key: str,
        intent: Intent,
        summary: str,
        outcome: str,
        latency_ms: float,
        detail: str,
    ) -> None:
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        volume = getattr(intent, "volume", None)
        log_method = log.info if outcome == "done" else log.warning
        log_method(
            "copy " + outcome,
            rule=dest.target.rule,
            follower=dest.follower,
            master_item=key,
            action=summary,
            client_order_id=getattr(intent, "client_order_id", None),
            latency_ms=round(latency_ms, 1),
            detail=detail or None,
        )
        if self._on_report is not None:
            self._on_report(
                CopyReport(
                    dest.target.rule,
                    dest.follower,
                    key,
                    type(intent).__name__,
                    summary,
                    volume,
                    outcome,
                    latency_ms,
                    detail,
                )
            )


def _payload(intent: Intent) -> dict[str, Any]:
    data = asdict(intent)
    return {k: (v.value if hasattr(v, "value") else v) for k, v in data.items()}

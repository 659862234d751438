"""The replicator: master changes in, follower orders out, each persisted before it is sent.

The I/O shell around the pure parts. Account changes become queue work for the routes of
that account (``intake.py``); a worker takes one (route, key), plans it against the cached
account states and links (``link_cache.py``), writes the link and a journal entry in one
transaction, sends the request and waits for the follower's execution event (``send.py``).
What the answer means and what follows — confirm or reject the link, stop, retry later
(``followups.py``), settle by reconciling (``settle.py``) — is decided in ``outcomes.py``;
an unknown outcome is settled by asking the broker, never by resending blindly. Between
the master's event and the follower's order there is only deciding, journaling and
sending: notes, summaries, reports and log lines come after the order is out.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import partial

from structlog.contextvars import bound_contextvars

from cmamd.accounts.session import AccountChange, AccountSession
from cmamd.logs import get_logger
from cmamd.replication import audit, confirm, identity, settle
from cmamd.replication.followups import FollowUps
from cmamd.replication.intake import Intake
from cmamd.replication.intents import Intent, KeyPlan
from cmamd.replication.journal_payload import payload_of
from cmamd.replication.link_cache import LinkCache, holds_item
from cmamd.replication.links import Link, LinkStatus
from cmamd.replication.outcomes import NextStep, Outcome, next_step, opens, settled_link
from cmamd.replication.plan_notes import log_notes
from cmamd.replication.planner import plan_key
from cmamd.replication.queue import ReplicationQueue, WorkKey
from cmamd.replication.reports import CopyReport, Stats, report, sent_copy
from cmamd.replication.routes import CopyRoute
from cmamd.replication.send import send
from cmamd.replication.store_fault import StoreFault, is_store_error, requeue_into
from cmamd.replication.tuning import ReplicationTuning
from cmamd.state.store import StateStore

__all__ = ["CopyReport", "CopyRoute", "Replicator", "Stats"]

log = get_logger("cmamd.replication")


class Replicator:
    def __init__(
        self,
        store: StateStore,
        sessions: Mapping[str, AccountSession],
        *,
        tuning: ReplicationTuning | None = None,
        on_report: Callable[[CopyReport], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.tuning = tuning if tuning is not None else ReplicationTuning()
        self._store = store
        self._sessions = sessions
        self._links = LinkCache(store)
        self.queue = ReplicationQueue()
        self._intake = Intake(sessions, self._links, self.queue, eager=self.tuning.workers)
        self._followups = FollowUps(self.queue, self.tuning)
        self.stats = Stats()
        self._on_report = on_report
        self._wall_clock = wall_clock
        self._tasks: list[asyncio.Task[None]] = []
        # follower symbol ids with an open/placement in flight, per route and key
        self._opening: dict[str, dict[str, int]] = {}
        self._busy: set[WorkKey] = set()  # being worked on by a worker right now
        self.audit_interval_s = self.tuning.audit_interval_s
        self.instance = identity.instance_id(store)
        self._copiers = identity.CopierWatch(self.instance)
        self.store_fault = StoreFault(requeue_into(self.queue.push))
        # journal entry ids, unique across runs without a uuid per order
        self._intent_prefix = uuid.uuid4().hex[:16]
        self._intent_numbers = itertools.count(1)

    # configuration ---------------------------------------------------------------------
    def set_destinations(self, destinations: Iterable[CopyRoute]) -> None:
        """Swap the route set atomically; the next planned key uses the new one."""
        routes = self._intake.set_routes(destinations, self.instance)
        for route_id in set(self._opening) - {r.id for r in routes}:
            del self._opening[route_id]
        self._copiers.watch(
            (r.follower_id, r.master_id, r.follower, self._sessions[r.follower].connection)
            for r in routes
            if r.follower in self._sessions
        )
        for route in routes:
            self._intake.resync(route.id)

    def resync_destination(self, dest_id: str) -> None:
        self._intake.resync(dest_id)

    def on_change(self, change: AccountChange) -> None:
        """Called by account sessions for every state change (synchronously)."""
        self._intake.on_change(change)

    def stop_intake(self) -> None:
        """On shutdown: master changes are no longer turned into work."""
        self._intake.accepting = False

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
        masters = {route.master for route in self._intake.routes}
        self._intake.on_resync = self._log_findings
        try:
            return await audit.reconcile_accounts(list(self._sessions.values()), masters)
        finally:
            self._intake.on_resync = None

    def _log_findings(self, route: CopyRoute, keys: list[str], origins: dict[str, str]) -> None:
        master, follower = self._sessions[route.master], self._sessions[route.follower]
        opening = self._opening.get(route.id, {})

        def plan_of(key: str) -> KeyPlan:
            return plan_key(
                route.target,
                key,
                master.state,
                follower.state,
                self._links.link_of(route.id, key),
                self._now_ms(),
                origins,
                follower.quote_to_deposit,
                busy_symbols=frozenset(v for k, v in opening.items() if k != key),
            )

        busy = {key for (route_id, _, key) in self._busy if route_id == route.id}
        audit.log_findings(route.target.rule, route.follower, keys, busy, plan_of)

    # restart (confirm.py) --------------------------------------------------------------
    async def confirm_unfinished_opens(self, now_ms: int) -> int:
        """Before start-up planning: opens from before a crash that the broker's order history
        shows executed get their link confirmed OPEN (confirm.py); returns how many."""
        confirmed = await confirm.confirm_after_restart(
            self._store, self._sessions.values(), now_ms
        )
        return len(confirmed)

    def settle_open_intents(self) -> int:
        """After the start-up reconcile: unfinished journal entries are marked resolved."""
        return confirm.settle_open_intents(self._store, self._sessions.values())

    # links -----------------------------------------------------------------------------
    @property
    def live_links(self) -> int:
        """Links held in memory: items still open on a master, or still being settled."""
        return self._links.live_count

    def prune_settled(self, cutoff_ms: int) -> int:
        """Forget settled links older than ``cutoff_ms`` whose master item is gone."""

        def master_has(route_id: str, key: str) -> bool | None:
            route = self._intake.routes.get(route_id)
            master = self._sessions.get(route.master) if route is not None else None
            if master is None or not master.ready.is_set():
                return None
            return holds_item(master.state, key)

        configured = [(r.target.rule, r.master_id, r.follower_id) for r in self._intake.routes]
        return self._links.prune_settled(configured, cutoff_ms, master_has)

    # running ---------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.tuning.workers)]

    async def drain(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.queue.wait_idle(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._followups.stop()
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
            # An item with nothing to send never suspends, and take() does not when work is
            # ready: without this a worker drains the whole queue in one step (1 000
            # no-op plans, ~50 ms) while the event that makes them matter (the master's
            # fill after its close order's acceptance) waits unread in the socket.
            await asyncio.sleep(0)

    async def _process(self, work: WorkKey, since: float) -> None:
        route = self._intake.routes.get(work[0])
        if route is None:
            return
        # Every line logged while this item is worked on (connection layer included) says
        # which rule, follower and master item it is about.
        with bound_contextvars(
            rule=route.target.rule, follower=route.follower, master_item=work[2]
        ):
            await self._process_bound(work, since)

    async def _process_bound(self, work: WorkKey, since: float) -> None:
        route_id, _, key = work
        for _ in range(self.tuning.max_rounds_per_take):
            route = self._intake.routes.get(route_id)
            if route is None:
                return
            master, follower = self._sessions[route.master], self._sessions[route.follower]
            if not (master.ready.is_set() and follower.ready.is_set()):
                return  # both re-plan everything on their resync
            if route.follower_id in self.frozen:
                return  # another copier works on it: never fight it
            link, from_settled = self._links.lookup(route_id, key)
            opening = self._opening.setdefault(route_id, {})
            plan = plan_key(
                route.target,
                key,
                master.state,
                follower.state,
                link,
                self._now_ms(),
                self._intake.origins_for(route, master.state),
                follower.quote_to_deposit,
                busy_symbols=frozenset(v for k, v in opening.items() if k != key),
                link_of=partial(self._links.link_of, route_id),
            )
            if from_settled and plan.link is not None:
                self._links.unsettle(route_id, key)  # decided anew (e.g. copies adopted)
            if not plan.intents:
                log_notes(route, plan)
                if plan.link is not None and plan.link != link:
                    self._links.save(route_id, plan.link)
                self._links.forget_if_done(route_id, key, plan.link or link, master.state)
                return
            carry_on = await self._execute(route, plan, since)
            log_notes(route, plan)  # once the orders are out: never on the copy path
            if not carry_on or self.queue.is_pending(work):
                return  # queued again (the follower's event came): planned after done
            since = time.monotonic()

    async def _execute(self, route: CopyRoute, plan: KeyPlan, since: float) -> bool:
        """Send the plan's intents in order; False when the key must wait for new facts."""
        follower = self._sessions[route.follower]
        link = plan.link
        opening = self._opening.setdefault(route.id, {})
        for intent in plan.intents:
            intent_id = f"{self._intent_prefix}{next(self._intent_numbers):x}"
            self._store.record_intent(
                link.to_dict() if link else None,
                intent_id,
                route.follower_id,
                plan.key,
                type(intent).__name__,
                getattr(intent, "client_order_id", None),
                payload_of(intent),
            )
            if link is not None:
                self._links.hold(route.id, link)
            state = follower.state
            sent = sent_copy(route, plan.key, intent, state.symbols_by_id, state.positions)
            is_open = opens(intent)
            if is_open:
                opening[plan.key] = getattr(intent, "symbol_id", 0)
            try:
                result = await send(follower, intent, self.tuning.order_timeout_s)
            finally:
                opening.pop(plan.key, None)
            latency_ms = (time.monotonic() - since) * 1000
            if result.outcome is Outcome.NOT_SENT:
                # never left the process: nothing to settle, the key is planned afresh
                self._followups.replan_when_connected(route.work(plan.key), follower)
            elif result.session_lost:
                # Not executed: the account's session is gone. Once it is re-authorised
                # and reconciled, every key of the account is planned again.
                follower.start_recovery(f"{result.detail} on a trade request")
            # The link's confirmed outcome is written before the journal entry is closed:
            # killed in between, the open entry is settled at start-up from the link (and
            # the order history); the other way round an executed open would stay OPENING
            # with a closed entry, and be made again if its copy was closed meanwhile.
            settled_to = settled_link(link, intent, result, self._now_ms())
            if settled_to is not None:
                self._links.save(route.id, settled_to)
                if settled_to.status is LinkStatus.OPEN:
                    link = settled_to
            self._store.journal_outcome(intent_id, result.outcome.journaled, result.detail)
            report(sent, result, latency_ms, self.stats, self._on_report)
            step = next_step(intent, result)
            if step is NextStep.CONTINUE:
                self._followups.succeeded(route.work(plan.key))
                continue
            if step is NextStep.RETRY_LATER:
                self._followups.retry_later(route, plan.key, result.detail)
            if step is not NextStep.SETTLE:
                return False
            await settle.settle(follower, self.tuning)
            if is_open and link is not None and link.status is LinkStatus.OPENING:
                await self._confirm_open(route, follower, link, intent)
            self._store.journal_outcome(intent_id, "resolved", "settled by reconciling the account")
            return True
        return True

    async def _confirm_open(
        self, route: CopyRoute, follower: AccountSession, link: Link, intent: Intent
    ) -> None:
        """An open with an unknown outcome whose copy the reconcile does not show: it may
        have filled and been closed since; the order history tells (confirm.py)."""
        current = self._links.live(route.id).get(link.key)
        if current is None or current.status is not LinkStatus.OPENING:
            return
        now = self._now_ms()
        client_order_id = getattr(intent, "client_order_id", "")
        if await confirm.executed(follower, client_order_id, type(intent).__name__, now):
            log.warning(
                "open with an unknown outcome confirmed by the order history",
                follower=route.follower,
                master_item=link.key,
                client_order_id=client_order_id,
            )
            self._links.save(route.id, current.opened(now))

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

"""The daemon's lifecycle: start-up, main loop, graceful shutdown.

Built from a loaded, validated config and an open state store (daemon/launch.py does that
and exits 78 on an invalid file).

start-up   the control hub -> connections and account sessions (concurrently; a broken
           account never stops the others) -> crash settlement -> routes -> READY=1 once
           every account is ready or has visibly failed
main loop  signals: HUP reloads (config_reload.py), TERM/INT stop; every few seconds
           STATUS=, equity stops (equity_watch.py), housekeeping; WATCHDOG=1 from a
           coroutine on the loop
shutdown   STOPPING=1 -> stop taking master events -> drain the queue (bounded) ->
           stop sessions, close sockets, close the store -> exit 0; each step bounded
           by one overall budget (shutdown.py), an overrun is logged by name
           a second TERM/INT exits at once
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypedDict

from cmamd.accounts.session import AccountSession
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.config.models import Config
from cmamd.control.hub import OperatorHub
from cmamd.daemon import config_reload
from cmamd.daemon.account_runner import AccountRunner
from cmamd.daemon.account_status import not_ready, status_suffix
from cmamd.daemon.equity_watch import EquityWatch
from cmamd.daemon.housekeeping import Housekeeping
from cmamd.daemon.notify import SystemdNotifier, run_watchdog
from cmamd.daemon.pool import ConnectionPool
from cmamd.daemon.shutdown import ShutdownStep, run_steps
from cmamd.daemon.startup import wait_until_settled
from cmamd.daemon.status_line import StatusFacts, status_line
from cmamd.daemon.timing import DaemonTiming
from cmamd.logs import get_logger
from cmamd.replication.executor import CopyReport, CopyRoute, Replicator
from cmamd.replication.routes_from_config import build_routes
from cmamd.replication.tuning import ReplicationTuning
from cmamd.state.marks import MarkStore
from cmamd.state.store import StateStore

log = get_logger("cmamd.daemon")

EX_CONFIG = 78  # sysexits: the unit's RestartPreventExitStatus keeps systemd from looping
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StartAborted(Exception):
    """Start-up cannot succeed by retrying (refused application credentials)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class DaemonOptions(TypedDict, total=False):
    """Daemon's keyword arguments, for those who build it (launch.py)."""

    notifier: SystemdNotifier
    on_report: Callable[[CopyReport], None] | None
    wall_clock: Callable[[], float]
    monotonic: Callable[[], float]
    timing: DaemonTiming
    tuning: ReplicationTuning


class Daemon:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        store: StateStore,
        *,
        environ: Mapping[str, str] | None = None,
        notifier: SystemdNotifier | None = None,
        on_report: Callable[[CopyReport], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timing: DaemonTiming | None = None,
        tuning: ReplicationTuning | None = None,
    ) -> None:
        self.config_path = config_path  # read again on SIGHUP
        self.config = config
        self.store = store
        self.environ = dict(os.environ if environ is None else environ)
        self.notifier = notifier or SystemdNotifier(env=self.environ)
        self.timing = timing or DaemonTiming()
        self.tuning = tuning or ReplicationTuning()
        self._on_report = on_report
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self.sessions: dict[str, AccountSession] = {}
        self.pool = ConnectionPool(config.api)
        self.tokens = TokenKeeper(store, wall_clock, self.timing.session)
        self.marks = MarkStore(store)
        self.replicator = Replicator(
            store,
            self.sessions,
            tuning=self.tuning,
            on_report=self._report,
            wall_clock=wall_clock,
        )
        self.accounts = AccountRunner(
            self.sessions, self.pool, self.tokens, self.replicator.on_change, self.timing
        )
        self.hub = OperatorHub(self, self.environ)  # control socket, overrides, alerts, metrics
        self.equity = EquityWatch(self.marks, self.hub.alert)
        self.housekeeping = Housekeeping(
            self.replicator.prune_settled, store.prune_journal, self.timing, wall_clock, monotonic
        )
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._stopping = False
        self.started = asyncio.Event()

    # entry ---------------------------------------------------------------------------
    async def run(self) -> int:
        self._install_signals()
        watchdog_stop = asyncio.Event()
        watchdog = asyncio.create_task(run_watchdog(self.notifier, watchdog_stop))
        exit_code = 0
        try:
            await self._start()
            await self._main_loop()
        except StartAborted as exc:
            exit_code = exc.exit_code
        finally:
            await self._shutdown()
            watchdog_stop.set()
            await asyncio.gather(watchdog, return_exceptions=True)
            self._remove_signals()
        return exit_code

    def request_stop(self) -> None:
        self._signals.put_nowait(signal.SIGTERM)

    # start-up --------------------------------------------------------------------------
    async def _start(self) -> None:
        config = self.config
        log.info("starting", accounts=len(config.enabled_accounts), rules=len(config.copy_rules))
        self.replicator.start()
        await self.hub.start()
        await self.accounts.start(config, config.enabled_accounts)
        self._abort_if_credentials_refused()
        still_starting = await wait_until_settled(
            lambda: self.sessions.values(),
            self.timing.account_start_timeout_s,
            self._monotonic,
            # 1 000 accounts on one connection take ~80 s, near systemd's default start
            # timeout (90 s): while accounts keep coming up, the start is not hung
            on_progress=lambda: self.notifier.extend_timeout(
                self.timing.account_start_timeout_s + 30
            ),
        )
        if still_starting:
            log.warning(
                "accounts still starting", accounts=still_starting, next="going on without them"
            )
        await self.replicator.confirm_unfinished_opens(self.now_ms())
        self.replicator.settle_open_intents()
        self.replicator.set_destinations(self.routes(config))
        self.replicator.start_audit(config.audit_interval_s)
        self.notifier.ready()
        self.update_status()
        self.started.set()
        log.info("ready", **self._counts())
        for name, reason in not_ready((a.name for a in config.enabled_accounts), self.sessions):
            log.error(
                "account not ready", account=name, reason=reason, next="retried in the background"
            )

    def _abort_if_credentials_refused(self) -> None:
        # Retrying cannot fix them and a restart loop would hammer the auth endpoint:
        # exit 78, which the unit's RestartPreventExitStatus leaves stopped.
        refused = self.pool.credentials_refused()
        if refused is not None:
            log.error(
                "application credentials refused",
                reason="fix api.client_id and the client secret",
                code=refused.code,
                description=refused.description,
            )
            raise StartAborted(EX_CONFIG)

    def routes(self, config: Config) -> list[CopyRoute]:
        """The copy routes of ``config`` between running accounts, with the operator's
        overrides; persists the marks the routes moved (a first start, a return from
        frozen, a converted equity-stop latch)."""
        built = build_routes(config, self.sessions, self.marks.all(), self.now_ms(), self.hub.apply)
        for dest_id, (old, new) in built.marks.items():
            self.marks.save(dest_id, old, new)
        return built.routes

    def now_ms(self) -> int:
        """The daemon's wall clock (injected), in ms."""
        return int(self._wall_clock() * 1000)

    # main loop -------------------------------------------------------------------------
    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, *STOP_SIGNALS):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, *STOP_SIGNALS):
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self._stopping and signum in STOP_SIGNALS:
            log.warning("second stop signal", reason="exiting at once")
            sys.stdout.flush()
            os._exit(1)
        self._signals.put_nowait(signum)

    async def _main_loop(self) -> None:
        while True:
            try:
                signum = await asyncio.wait_for(self._signals.get(), self.timing.status_interval_s)
            except TimeoutError:
                self._tick()
                continue
            if signum == signal.SIGHUP:
                await config_reload.reload(self)
            else:
                log.info("stopping", signal=signal.Signals(signum).name)
                return

    def _tick(self) -> None:
        if self.equity.check(self.config, self.sessions):
            self.replicator.set_destinations(self.routes(self.config))
        self.update_status()
        self.housekeeping.run_if_due()

    # status ----------------------------------------------------------------------------
    def _report(self, report: CopyReport) -> None:
        self.hub.on_report(report)
        if self._on_report is not None:
            self._on_report(report)

    def _counts(self) -> dict[str, int]:
        ready = sum(1 for s in self.sessions.values() if s.ready.is_set())
        return {"accounts_ready": ready, "accounts_total": len(self.config.enabled_accounts)}

    def update_status(self, extra: str = "") -> None:
        self.notifier.status(self.status_line(extra))

    def status_line(self, extra: str = "") -> str:
        """accounts up/total, copies done, queue depth: systemd's STATUS= line."""
        counts = self._counts()
        stats = self.replicator.stats
        reauth = sorted(n for n, sess in self.sessions.items() if sess.needs_reauth is not None)
        names = (a.name for a in self.config.enabled_accounts if a.name not in reauth)
        return status_line(
            StatusFacts(
                accounts_ready=counts["accounts_ready"],
                accounts_total=counts["accounts_total"],
                copies_done=stats.done,
                copies_rejected=stats.rejected,
                queue_depth=self.replicator.queue.depth,
                equity_stopped=self.equity.stopped(self.config),
                needs_reauth=reauth,
                frozen=self.replicator.frozen_followers(),
                not_ready=status_suffix(not_ready(names, self.sessions)),
                store_fault=self.replicator.store_fault.active or "",
                extra=extra,
            )
        )

    # shutdown --------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._stopping = True
        self.notifier.stopping()
        steps = [
            ShutdownStep("control socket", self.hub.stopping),
            ShutdownStep("queue drain", self._drain),
            ShutdownStep("replication workers", self.replicator.stop),
            ShutdownStep("account sessions", self.accounts.stop_all),
            ShutdownStep("operator hub", self.hub.stop),
            ShutdownStep("connections", self.pool.close),
        ]
        unfinished = await run_steps(
            steps,
            self.config.shutdown_timeout_s + self.timing.teardown_s,
            self._monotonic,
            min_step_s=self.timing.shutdown_step_min_s,
        )
        self.store.close()
        log.info("stopped", unfinished=unfinished)

    async def _drain(self) -> None:
        self.replicator.stop_intake()
        if not await self.replicator.drain(self.config.shutdown_timeout_s):
            log.warning(
                "queue not drained in time", reason="shutdown", depth=self.replicator.queue.depth
            )

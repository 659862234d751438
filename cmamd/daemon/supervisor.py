"""The daemon's lifecycle: start-up, main loop, SIGHUP reload, graceful shutdown.

start-up   load config -> logging -> state store -> connections and account sessions
           (concurrently; a broken account never stops the others) -> replicator
           -> READY=1 once every account is ready or has visibly failed
main loop  signals: HUP reloads, TERM/INT stop; STATUS= and equity stops every few s;
           WATCHDOG=1 from a coroutine on the loop
reload     RELOADING=1 -> load and validate the new file; invalid: keep everything;
           valid: apply only the difference -> READY=1
shutdown   STOPPING=1 -> stop taking master events -> drain the queue (bounded) ->
           stop sessions, close sockets, close the store -> exit 0
           a second TERM/INT exits at once
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import SecretStr

from cmamd.accounts.session import AccountSession
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.config import placeholders
from cmamd.config.diff import diff_configs
from cmamd.config.loader import ConfigError, load_config
from cmamd.config.models import AccountConfig, Config
from cmamd.config.problems import format_path
from cmamd.config.rules import VolumeMode
from cmamd.control.hub import OperatorHub
from cmamd.daemon import dest_marks, reload_status
from cmamd.daemon.account_status import not_ready, status_suffix
from cmamd.daemon.dest_marks import EQUITY_STOP_PREFIX
from cmamd.daemon.destinations import FactsCache
from cmamd.daemon.notify import SystemdNotifier, run_watchdog
from cmamd.daemon.pool import ConnectionPool
from cmamd.daemon.startup import wait_until_settled
from cmamd.logs import configure_logging, get_logger, register_secret
from cmamd.replication.executor import CopyReport, CopyRoute, Replicator
from cmamd.replication.planner import CopyTarget
from cmamd.state.store import StateStore

log = get_logger("cmamd.daemon")

EX_CONFIG = 78  # sysexits: the unit's RestartPreventExitStatus keeps systemd from looping
STATUS_INTERVAL_S = 5.0
HOUSEKEEPING_INTERVAL_S = 3600.0
HISTORY_DAYS = 30  # closed links and settled journal entries kept this long
PNL_INTERVAL_S = 15.0
ACCOUNT_START_TIMEOUT_S = 120.0
EQUITY_MODES = {VolumeMode.EQUITY_RATIO, VolumeMode.RISK_PERCENT}


class StartAborted(Exception):
    """Start-up cannot succeed by retrying (refused application credentials)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        environ: Mapping[str, str] | None = None,
        notifier: SystemdNotifier | None = None,
        on_report: Callable[[CopyReport], None] | None = None,
    ) -> None:
        self.config_path = config_path
        self._environ = dict(os.environ if environ is None else environ)
        self.notifier = notifier or SystemdNotifier(env=self._environ)
        self._on_report = on_report
        self.config: Config | None = None
        self.store: StateStore | None = None
        self.pool: ConnectionPool | None = None
        self.replicator: Replicator | None = None
        self.hub: OperatorHub | None = None  # control socket, overrides, alerts, metrics
        self.sessions: dict[str, AccountSession] = {}
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._stopping = False
        self._starting: set[asyncio.Task[None]] = set()
        self._last_housekeeping = 0.0
        self._facts = FactsCache()
        self.started = asyncio.Event()

    # entry ---------------------------------------------------------------------------
    async def run(self) -> int:
        try:
            config = load_config(self.config_path, environ=self._environ)
        except ConfigError as exc:
            configure_logging("info", "auto")
            log.error(
                "invalid configuration", path=str(self.config_path), problems=str(exc).splitlines()
            )
            return EX_CONFIG
        self.config = config
        configure_logging(
            config.logging.level, config.logging.format, secrets=config.secret_values()
        )
        for loc, message in placeholders.warnings(config):  # the example's ids: cannot work
            log.warning("configuration warning", path=format_path(loc), problem=message)
        try:
            self.store = StateStore.open(config.state_dir)
        except Exception as exc:
            log.error(
                "cannot open the state store", state_dir=str(config.state_dir), error=str(exc)
            )
            return EX_CONFIG if isinstance(exc, PermissionError) else 1
        self._install_signals()
        watchdog_stop = asyncio.Event()
        watchdog = asyncio.create_task(run_watchdog(self.notifier, watchdog_stop))
        exit_code = 0
        try:
            await self._start(config)
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
    async def _start(self, config: Config) -> None:
        assert self.store is not None
        log.info("starting", accounts=len(config.enabled_accounts), rules=len(config.copy_rules))
        self.pool = ConnectionPool(config.api)
        self.tokens = TokenKeeper(self.store)
        self.hub = OperatorHub(self, self._environ)
        self.replicator = Replicator(self.store, self.sessions, on_report=self._report)
        self.replicator.start()
        await self.hub.start()
        await self._start_accounts(config, config.enabled_accounts)
        self._abort_if_credentials_refused()
        still_starting = await wait_until_settled(
            lambda: self.sessions.values(),
            ACCOUNT_START_TIMEOUT_S,
            # 1 000 accounts on one connection take ~80 s, near systemd's default start
            # timeout (90 s): while accounts keep coming up, the start is not hung
            on_progress=lambda: self.notifier.extend_timeout(ACCOUNT_START_TIMEOUT_S + 30),
        )
        if still_starting:
            log.warning("accounts still starting; going on without them", accounts=still_starting)
        await self.replicator.confirm_unfinished_opens(int(time.time() * 1000))
        self.replicator.settle_open_intents()
        self.replicator.set_destinations(self._destinations(config))
        self.replicator.start_audit(config.audit_interval_s)
        self.notifier.ready()
        self._update_status()
        self.started.set()
        log.info("ready", **self._counts())
        for name, reason in not_ready((a.name for a in config.enabled_accounts), self.sessions):
            log.error("account not ready; retried in the background", account=name, reason=reason)

    def _abort_if_credentials_refused(self) -> None:
        # Retrying cannot fix them and a restart loop would hammer the auth endpoint:
        # exit 78, which the unit's RestartPreventExitStatus leaves stopped.
        assert self.pool is not None
        refused = self.pool.credentials_refused()
        if refused is not None:
            log.error(
                "application credentials refused by the server; fix api.client_id and the "
                "client secret",
                code=refused.code,
                description=refused.description,
            )
            raise StartAborted(EX_CONFIG)

    async def _start_accounts(self, config: Config, accounts: list[AccountConfig]) -> None:
        equity_accounts = self._accounts_needing_equity(config)
        risk_accounts = {
            dest.account
            for rule in config.copy_rules
            for dest in rule.destinations
            if dest.volume.mode is VolumeMode.RISK_PERCENT
        }
        for account in accounts:
            self.tokens.seed(
                account.account_id,
                _secret(account.initial_access_token),
                _secret(account.initial_refresh_token),
            )
        await asyncio.gather(
            *(
                self._start_account(a, a.name in equity_accounts, a.name in risk_accounts)
                for a in accounts
            )
        )

    async def _start_account(
        self, account: AccountConfig, wants_equity: bool, wants_conversion: bool
    ) -> None:
        assert self.pool is not None and self.replicator is not None
        try:
            connection = await self.pool.connection_for(account.name, account.live)
        except Exception as exc:
            log.error("no connection for account", account=account.name, error=str(exc))
            return
        session = AccountSession(
            name=account.name,
            account_id=account.account_id,
            is_live=account.live,
            connection=connection,
            tokens=self.tokens,
            on_change=self.replicator.on_change,
            pnl_interval_s=PNL_INTERVAL_S if wants_equity else None,
            # risk sizing converts the stop's loss into the deposit currency
            conversion_quotes=wants_conversion,
        )
        self.sessions[account.name] = session
        # Not cancelled when slow: READY must not wait forever for one account, but the
        # account keeps coming up in the background and copies once it is ready.
        starting = asyncio.create_task(session.start(), name=f"start-{account.name}")
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)
        done, _ = await asyncio.wait({starting}, timeout=ACCOUNT_START_TIMEOUT_S)
        if not done:
            log.warning("account still starting; going on without it", account=account.name)

    async def _stop_account(self, name: str, *, logout: bool) -> None:
        assert self.pool is not None
        session = self.sessions.pop(name, None)
        if session is not None:
            await session.stop(logout=logout)
        await self.pool.release(name)

    def _destinations(self, config: Config) -> list[CopyRoute]:
        assert self.store is not None
        result = []
        for rule in config.copy_rules:
            if not rule.enabled:
                continue
            master = config.account(rule.source)
            for dest in rule.destinations:
                follower = config.account(dest.account)
                if not (master.enabled and follower.enabled):
                    continue
                if master.name not in self.sessions or follower.name not in self.sessions:
                    continue  # never started (logged): its rules wait for a reload
                dest_id = _dest_id(config, rule.name, rule.source, dest.account)
                now_ms = int(time.time() * 1000)
                stopped = dest_marks.equity_stop_latched(self.store, dest_id, dest)
                target = CopyTarget(
                    rule=rule.name,
                    dest=dest,
                    master_account_id=master.account_id,
                    follower_account_id=follower.account_id,
                    started_ms=0,
                    liquidate=stopped,
                )
                if self.hub is not None:
                    target = self.hub.apply(target, dest_id)
                # from the effective mode (YAML or ctl): a return from frozen, whoever set
                # it, moves the start, so what the master did meanwhile is "existing"
                started = dest_marks.copying_since_ms(self.store, dest_id, target.dest, now_ms)
                target = dataclasses.replace(target, started_ms=started)
                result.append(CopyRoute(dest_id, target, master.name, follower.name))
        return result

    @staticmethod
    def _accounts_needing_equity(config: Config) -> set[str]:
        names: set[str] = set()
        for rule in config.copy_rules:
            for dest in rule.destinations:
                if dest.volume.mode in EQUITY_MODES or dest.equity_stop is not None:
                    names.add(dest.account)
                if dest.volume.mode is VolumeMode.EQUITY_RATIO:
                    names.add(rule.source)
        return names

    # main loop -------------------------------------------------------------------------
    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self._stopping and signum in (signal.SIGTERM, signal.SIGINT):
            log.warning("second stop signal: exiting at once")
            sys.stdout.flush()
            os._exit(1)
        self._signals.put_nowait(signum)

    async def _main_loop(self) -> None:
        while True:
            try:
                signum = await asyncio.wait_for(self._signals.get(), STATUS_INTERVAL_S)
            except TimeoutError:
                self._check_equity_stops()
                self._update_status()
                self._housekeeping()
                continue
            if signum == signal.SIGHUP:
                try:
                    await self._reload()
                except Exception as exc:  # a reload must never take the daemon down
                    log.exception("reload failed part-way")
                    assert self.config is not None
                    problems = [f"{exc!r}; restart cmamd to apply the configuration cleanly"]
                    reload_status.write(
                        self.config.state_dir, ok=False, problems=problems, partial=True
                    )
                    self.notifier.ready()
            else:
                log.info("stopping", signal=signal.Signals(signum).name)
                return

    # reload ----------------------------------------------------------------------------
    async def _reload(self) -> None:
        assert self.config is not None and self.store is not None and self.replicator is not None
        self.notifier.reloading()
        log.info("reloading", path=str(self.config_path))
        try:
            new = load_config(self.config_path, environ=self._environ)
        except ConfigError as exc:
            problems = str(exc).splitlines()
            log.error(
                "reload rejected: invalid configuration, keeping the running one", problems=problems
            )
            reload_status.write(self.config.state_dir, ok=False, problems=problems)
            self.notifier.ready()
            self._update_status(extra="last reload rejected")
            return
        diff = diff_configs(self.config, new)
        if new.state_dir != self.config.state_dir or diff.api_changed:
            # Connections and the store are built from these; a restart applies them.
            why = "state_dir" if new.state_dir != self.config.state_dir else "api"
            problems = [f"{why}: changes here need a restart (systemctl restart cmamd)"]
            log.error("reload rejected", problems=problems)
            reload_status.write(self.config.state_dir, ok=False, problems=problems)
            self.notifier.ready()
            return
        for secret in new.secret_values():
            register_secret(secret)
        if diff.logging_changed:
            configure_logging(new.logging.level, new.logging.format, secrets=new.secret_values())
        for session in self.sessions.values():  # new tokens from `cmamd auth` are tried now
            session.retry_authorisation("reload")
        removed = set(diff.accounts_removed) | set(diff.accounts_changed)
        added = set(diff.accounts_added) | set(diff.accounts_changed)
        added = {n for n in added if new.account(n).enabled}
        problems = await self._prepare_connections(new, added)
        if problems:
            log.error("reload rejected", problems=problems)
            reload_status.write(self.config.state_dir, ok=False, problems=problems)
            self.notifier.ready()
            return
        # Nothing below can be refused: the reload now applies completely.
        # Rules first: the removed accounts' destinations stop taking work; then their
        # in-flight work drains before their sessions go.
        self.config = new
        self.replicator.set_destinations(
            [
                d
                for d in self._destinations(new)
                if d.master not in added and d.follower not in added
            ]
        )
        if removed:
            await self.replicator.drain(new.shutdown_timeout_s)
            for name in sorted(removed):
                await self._stop_account(name, logout=True)
        if added:
            await self._start_accounts(new, [new.account(n) for n in sorted(added)])
        self.replicator.set_destinations(self._destinations(new))
        self.replicator.audit_interval_s = new.audit_interval_s
        retried = self._retry_failed_accounts(new, exclude=added)
        reload_status.write(new.state_dir, ok=True, problems=[])
        log.info(
            "reloaded",
            added=sorted(added - removed),
            removed=sorted(removed - added),
            changed=sorted(added & removed),
            rules_changed=diff.rules_changed,
            retried=retried,
        )
        self.notifier.ready()
        self._update_status()

    async def _prepare_connections(self, new: Config, added: set[str]) -> list[str]:
        """Get the added accounts' connections before anything changes; the problems."""
        assert self.pool is not None
        problems = []
        for name in sorted(added):
            account = new.account(name)
            try:
                await self.pool.connection_for(name, account.live)
            except Exception as exc:
                problems.append(f"accounts.{name}: no connection: {exc}")
        if problems:
            for name in added:
                if name not in self.sessions:
                    await self.pool.release(name)
        return problems

    def _retry_failed_accounts(self, config: Config, *, exclude: set[str]) -> list[str]:
        """SIGHUP also means "try again": failed accounts start over (with the config's
        tokens, should the stored pair be the one refused)."""
        retried = []
        for account in config.enabled_accounts:
            session = self.sessions.get(account.name)
            if account.name in exclude or session is None:
                continue
            self.tokens.seed(
                account.account_id,
                _secret(account.initial_access_token),
                _secret(account.initial_refresh_token),
            )
            if session.retry_if_failed():
                retried.append(account.name)
        return retried

    # equity stop and status ------------------------------------------------------------
    def _check_equity_stops(self) -> None:
        if self.config is None or self.store is None or self.replicator is None:
            return
        tripped = False
        for facts in self._facts.facts(self.config):
            dest = facts.dest
            if dest.equity_stop is None:
                continue
            session = self.sessions.get(dest.account)
            if session is None or not session.ready.is_set():
                continue
            equity = session.state.equity
            if equity is None or equity >= dest.equity_stop.below:
                continue
            if dest_marks.equity_stop_latched(self.store, facts.dest_id, dest):
                continue
            dest_marks.latch_equity_stop(self.store, facts.dest_id, dest)
            log.error(
                "EQUITY STOP: closing copies and freezing the destination",
                rule=facts.rule,
                follower=dest.account,
                equity=str(equity),
                threshold=str(dest.equity_stop.below),
            )
            if self.hub is not None:
                self.hub.alert(
                    "equity_stop",
                    f"EQUITY STOP on {dest.account} ({facts.rule}): equity {equity} "
                    f"below {dest.equity_stop.below}; copies closed, destination frozen",
                    {"rule": facts.rule, "follower": dest.account, "equity": str(equity)},
                )
            tripped = True
        if tripped:
            self.replicator.set_destinations(self._destinations(self.config))

    def _housekeeping(self) -> None:
        """Hourly: forget closed links and settled journal entries older than the history."""
        now = time.monotonic()
        if self.store is None or now - self._last_housekeeping < HOUSEKEEPING_INTERVAL_S:
            return
        self._last_housekeeping = now
        cutoff_ms = int((time.time() - HISTORY_DAYS * 86400) * 1000)
        # only settled links whose master item is gone: the rest still guard against reopening
        links = self.replicator.prune_settled(cutoff_ms) if self.replicator else 0
        entries = self.store.prune_journal(cutoff_ms)
        if links or entries:
            log.info("state pruned", closed_links=links, journal_entries=entries, days=HISTORY_DAYS)

    def _report(self, report: CopyReport) -> None:
        if self.hub is not None:
            self.hub.on_report(report)
        if self._on_report is not None:
            self._on_report(report)

    def _counts(self) -> dict[str, int]:
        ready = sum(1 for s in self.sessions.values() if s.ready.is_set())
        total = len(self.config.enabled_accounts) if self.config else 0
        return {"accounts_ready": ready, "accounts_total": total}

    def _update_status(self, extra: str = "") -> None:
        self.notifier.status(self.status_line(extra))

    def status_line(self, extra: str = "") -> str:
        """accounts up/total, copies done, queue depth: systemd's STATUS= line."""
        counts = self._counts()
        stats = self.replicator.stats if self.replicator else None
        depth = self.replicator.queue.depth if self.replicator else 0
        stopped = self._equity_stopped()
        text = (
            f"accounts {counts['accounts_ready']}/{counts['accounts_total']} ready; "
            f"copies {stats.done if stats else 0} done, {stats.rejected if stats else 0} rejected; "
            f"queue {depth}"
        )
        if stopped:
            text += f"; EQUITY STOP: {', '.join(stopped)}"
        reauth = sorted(n for n, sess in self.sessions.items() if sess.needs_reauth is not None)
        if reauth:
            text += f"; NEEDS RE-AUTHORISATION (cmamd auth): {', '.join(reauth)}"
        frozen = self.replicator.frozen_followers() if self.replicator else []
        if frozen:
            text += f"; FROZEN, another cmamd copies onto: {', '.join(frozen)}"
        if self.config is not None:
            names = (a.name for a in self.config.enabled_accounts if a.name not in reauth)
            suffix = status_suffix(not_ready(names, self.sessions))
            if suffix:
                text += f"; {suffix}"
        fault = self.replicator.store_fault.active if self.replicator else None
        if fault:
            text += f"; STATE STORE FAULT: {fault}"
        if extra:
            text += f"; {extra}"
        return text

    def _equity_stopped(self) -> list[str]:
        """``rule:follower`` of every destination frozen by its equity stop."""
        if self.config is None or self.store is None:
            return []
        stops = self.store.meta_items(EQUITY_STOP_PREFIX)  # one query, not one per destination
        return [
            f"{facts.rule}:{facts.follower}"
            for facts in self._facts.facts(self.config)
            if facts.equity_stop_fingerprint
            and stops.get(facts.equity_stop_key) == facts.equity_stop_fingerprint
        ]

    # shutdown --------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._stopping = True
        self.notifier.stopping()
        if self.hub is not None:
            await self.hub.stopping()
        timeout = self.config.shutdown_timeout_s if self.config else 10.0
        if self.replicator is not None:
            self.replicator.stop_intake()
            drained = await self.replicator.drain(timeout)
            if not drained:
                log.warning(
                    "shutdown: queue not drained in time", depth=self.replicator.queue.depth
                )
            await self.replicator.stop()
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        for name in list(self.sessions):
            await self._stop_account(name, logout=False)
        if self.hub is not None:
            await self.hub.stop()
        if self.pool is not None:
            await self.pool.close()
        if self.store is not None:
            self.store.close()
        log.info("stopped")


def _dest_id(config: Config, rule: str, master: str, follower: str) -> str:
    """A destination's identity: by account ids, so renaming an account keeps its history,
    and a rule pointed at another master starts afresh."""
    return f"{rule}:{config.account(master).account_id}:{config.account(follower).account_id}"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None

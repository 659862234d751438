"""Everything an operator uses around the copy path, started and stopped by the daemon:
the control socket, the run-time overrides, copy figures, alerts and metrics.

The supervisor calls ``on_report`` for every copy report, ``alert`` where something
must be heard at once, ``apply`` when it builds its destinations, and ``start``/``stop``.
Nothing here can stop the daemon: a sink or the metrics endpoint that fails is logged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmamd.accounts.status import NEEDS_OPERATOR, SessionStatus
from cmamd.alerts import bus
from cmamd.alerts.dispatcher import AlertDispatcher
from cmamd.config.models import AccountConfig, Config
from cmamd.config.operating import DEFAULT_SOCKET_NAME
from cmamd.config.rules import CopyMode
from cmamd.control import actions
from cmamd.control.audit import ControlJournal
from cmamd.control.overrides import Overrides
from cmamd.control.peer import Peer, Policy, group_id
from cmamd.control.protocol import Request
from cmamd.control.server import ControlServer
from cmamd.control.stats import CopyFigures
from cmamd.logs import get_logger
from cmamd.replication.executor import CopyReport, CopyRoute
from cmamd.replication.planner import CopyTarget

if TYPE_CHECKING:
    from cmamd.daemon.supervisor import Daemon
    from cmamd.metrics import MetricsServer

log = get_logger("cmamd.control")

WATCH_INTERVAL_S = 1.0
CLOSE_REFUSALS_TO_ALERT = 3  # a close refused this many times in a row is its own alert


def socket_path(config: Config, environ: dict[str, str]) -> Path:
    """control.socket, else $RUNTIME_DIRECTORY/control.sock (systemd), else the state dir."""
    if config.control.socket is not None:
        return config.control.socket
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime or config.state_dir) / DEFAULT_SOCKET_NAME


class OperatorHub:
    def __init__(self, daemon: Daemon, environ: dict[str, str]) -> None:
        self.daemon = daemon
        self._environ = environ
        self.overrides = Overrides(daemon.store)
        self.journal = ControlJournal(daemon.store)
        self.figures = CopyFigures()
        self.report_listeners: list[Callable[[CopyReport], None]] = []
        self.alerts = AlertDispatcher(daemon.config.alerts)
        self.metrics: MetricsServer | None = None
        self._server: ControlServer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._seen_status: dict[str, SessionStatus] = {}
        self._close_refusals: dict[tuple[str, str], int] = {}
        self._restarting: set[str] = set()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        config = self.daemon.config
        self.alerts.start()
        bus.set_receiver(self.alert)
        if config.control.enabled:
            await self._start_control(config)
        if config.metrics is not None:
            # imported only when configured: prometheus_client is of no use otherwise
            from cmamd.metrics import MetricsServer

            try:
                self.metrics = MetricsServer(self, config.metrics.host, config.metrics.port)
                await self.metrics.start()
            except Exception as exc:
                log.error(
                    "metrics endpoint not started", listen=config.metrics.listen, error=str(exc)
                )
                self.metrics = None
        self._watcher = asyncio.create_task(self._watch_accounts(), name="operator-watch")

    async def _start_control(self, config: Config) -> None:
        gid = None
        if config.control.group is not None:
            try:
                gid = group_id(config.control.group)
            except KeyError:
                log.error(
                    "control group unknown",
                    group=config.control.group,
                    reason="control.group names no group on this system",
                )
        policy = Policy(daemon_uid=os.getuid(), group_gid=gid)
        path = socket_path(config, self._environ)
        server = ControlServer(
            path, policy, self._handle, group_gid=gid, journal=self._journal_action
        )
        try:
            await server.start()
        except Exception as exc:  # the copier runs on without its control socket
            log.error("control socket not started", path=str(path), error=str(exc))
            return
        self._server = server

    async def stopping(self) -> None:
        """The daemon is going down: say so while the sinks still run."""
        self.alert("daemon_stopping", "cmamd is stopping", {"status": self.daemon.status_line()})
        # no new control actions while the queue drains and the sessions go
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def stop(self) -> None:
        bus.set_receiver(None)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.alerts.stop()

    # the daemon's hooks ---------------------------------------------------------------
    def apply(self, target: CopyTarget, dest_id: str) -> CopyTarget:
        return self.overrides.apply(target, dest_id)

    def on_report(self, report: CopyReport) -> None:
        self.figures.record(report)
        if self.metrics is not None:
            self.metrics.on_report(report)
        for listener in list(self.report_listeners):
            listener(report)
        self._alert_on_report(report)

    def alert(self, cause: str, text: str, details: dict[str, Any] | None = None) -> None:
        """Queue an alert (never blocks; see AlertDispatcher). Code without the hub at hand
        calls ``cmamd.alerts.bus.emit`` instead, which lands here."""
        self.alerts.alert(cause, text, details or {})

    # helpers the actions use -------------------------------------------------------------
    def destinations(self) -> list[CopyRoute]:
        return self.daemon.routes(self.daemon.config)

    def yaml_mode(self, dest: CopyRoute) -> CopyMode:
        for rule in self.daemon.config.copy_rules:
            if rule.name == dest.target.rule:
                for yaml_dest in rule.destinations:
                    if yaml_dest.account == dest.follower:
                        return yaml_dest.mode
        return dest.target.dest.mode

    def apply_destinations(self) -> None:
        """Hand the replicator the targets with the overrides as they now are. Before the
        daemon is started it does that itself (from the same store) once accounts are up."""
        if self.daemon.started.is_set():
            self.daemon.replicator.set_destinations(self.destinations())

    async def restart_account(self, account: AccountConfig) -> None:
        self._restarting.add(account.name)
        try:
            await self.daemon.accounts.stop(account.name, logout=False)
            await self.daemon.accounts.start(self.daemon.config, [account])
        finally:
            self._restarting.discard(account.name)
        self.apply_destinations()

    def log_trades(self, command: str, results: list[dict[str, Any]], **context: Any) -> None:
        """One line per account of a ``ctl order``/``ctl close``, with the usual field names
        (``account``, ``symbol``, ``lots``/``volume``, ``position_id``, ``reason``)."""
        for result in results:
            fields = {**context, **result}
            reason = fields.pop("detail", None) or None
            log.info("control trade", command=command, reason=reason, **fields)

    async def _handle(self, request: Request, peer: Peer) -> Any:
        return await actions.run(self, request)

    def _journal_action(
        self, peer: Peer, action: str, args: Any, result: str, message: str
    ) -> None:
        self.journal.record(peer.uid, peer.pid, action, args, result, message)

    # alerts from what the daemon does ---------------------------------------------------
    def _alert_on_report(self, report: CopyReport) -> None:
        key = (f"{report.rule}:{report.follower}", report.key)
        closing = report.action in ("ClosePosition", "CancelPendingOrder")
        if report.outcome == "rejected" and closing:
            self._close_refusals[key] = self._close_refusals.get(key, 0) + 1
            if self._close_refusals[key] >= CLOSE_REFUSALS_TO_ALERT:
                self.alert(
                    "close_refused",
                    f"{report.follower}: {report.summary} refused "
                    f"{self._close_refusals[key]} times ({report.detail})",
                    _report_details(report),
                )
            return
        if report.outcome == "rejected":
            self.alert(
                "copy_refused",
                f"{report.follower}: {report.summary} refused by the broker ({report.detail})",
                _report_details(report),
            )
        elif report.outcome == "done":
            self._close_refusals.pop(key, None)

    async def _watch_accounts(self) -> None:
        """Account state changes that need an operator: failed, or needing a new token."""
        while True:
            try:
                self._check_accounts()
            except Exception:
                log.exception("account watch failed")
            await asyncio.sleep(WATCH_INTERVAL_S)

    def _check_accounts(self) -> None:
        for name, session in list(self.daemon.sessions.items()):
            status = session.status
            before = self._seen_status.get(name)
            self._seen_status[name] = status
            if status == before or name in self._restarting:
                continue
            if status not in NEEDS_OPERATOR:
                continue
            error = str(session.error or "")
            token = status is SessionStatus.NEEDS_REAUTH or any(
                w in error.lower() for w in ("token", "unauthori", "not authori")
            )
            if token:
                self.alert(
                    "account_reauth",
                    f"{name} needs re-authorisation: {error}",
                    {"account": name, "error": error},
                )
            else:
                self.alert(
                    "account_failed", f"{name} failed: {error}", {"account": name, "error": error}
                )


def _report_details(report: CopyReport) -> dict[str, Any]:
    return {
        "rule": report.rule,
        "follower": report.follower,
        "master_item": report.key,
        "action": report.summary,
        "code": report.detail,
    }

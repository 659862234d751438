"""The optional Prometheus endpoint (``metrics: {listen: 127.0.0.1:9464}``), served by
prometheus_client, the ecosystem's own library, from its own thread.

Counters and the latency histogram are updated from copy reports (prometheus_client's
metrics are thread-safe). Everything else is read at scrape time from the same document
``ctl status`` returns, built on the event loop (the scrape thread asks the loop for it
and waits), so a scrape never reads the daemon's state from another thread and its
figures are those ``ctl status`` would show at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cmamd.accounts.status import SessionStatus
from cmamd.control.status import status_of
from cmamd.logs import get_logger
from cmamd.replication.executor import CopyReport

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from cmamd.control.hub import OperatorHub

log = get_logger("cmamd.metrics")

SCRAPE_TIMEOUT_S = 5.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ACCOUNT_STATES = tuple(SessionStatus)


class _StatusCollector(Collector):
    def __init__(self, hub: OperatorHub, loop: asyncio.AbstractEventLoop) -> None:
        self._hub = hub
        self._loop = loop

    async def _status(self) -> dict[str, Any]:
        return status_of(self._hub)

    def collect(self) -> Iterator[Any]:
        future = asyncio.run_coroutine_threadsafe(self._status(), self._loop)
        status = future.result(SCRAPE_TIMEOUT_S)
        yield from families(status)


def families(status: dict[str, Any]) -> Iterator[Any]:
    """Metric families from a ``ctl status`` document (pure: tested without a server)."""
    queue = GaugeMetricFamily("cmamd_queue_depth", "Replication work items waiting")
    queue.add_metric([], status["queue"]["depth"])
    yield queue
    busy = GaugeMetricFamily("cmamd_queue_in_progress", "Replication work items being worked")
    busy.add_metric([], status["queue"]["in_progress"])
    yield busy
    by_state = GaugeMetricFamily("cmamd_accounts", "Accounts by session state", labels=["state"])
    counts = dict.fromkeys(ACCOUNT_STATES, 0)
    for account in status["accounts"]:
        counts[account["state"]] = counts.get(account["state"], 0) + 1
    for state, count in counts.items():
        by_state.add_metric([state], count)
    yield by_state
    ready = GaugeMetricFamily(
        "cmamd_account_ready", "1 when the account is ready", labels=["account"]
    )
    expiry = GaugeMetricFamily(
        "cmamd_token_expiry_timestamp_seconds",
        "When the account's access token expires (unix time)",
        labels=["account"],
    )
    for account in status["accounts"]:
        ready.add_metric([account["name"]], 1 if account["ready"] else 0)
        if account["token_expires_ms"]:
            expiry.add_metric([account["name"]], account["token_expires_ms"] / 1000)
    yield ready
    yield expiry
    used = GaugeMetricFamily(
        "cmamd_rate_budget_used", "Requests sent in the last second", labels=["connection"]
    )
    limit = GaugeMetricFamily(
        "cmamd_rate_budget_limit", "Requests allowed per second", labels=["connection"]
    )
    waiting = GaugeMetricFamily(
        "cmamd_rate_budget_waiting", "Requests waiting for the budget", labels=["connection"]
    )
    rejected = CounterMetricFamily(
        "cmamd_rate_limit_rejections",
        "Requests the server refused as over its rate limit",
        labels=["connection"],
    )
    reconnects = CounterMetricFamily(
        "cmamd_reconnects", "Reconnects of the connection", labels=["connection"]
    )
    for connection in status["connections"]:
        name = [connection["name"]]
        used.add_metric(name, connection["rate_used"])
        limit.add_metric(name, connection["max_rps"] or 0)
        waiting.add_metric(name, connection["rate_waiting"])
        rejected.add_metric(name, connection.get("rate_limited", 0))
        reconnects.add_metric(name, connection.get("reconnects", 0))
    yield from (used, limit, waiting, rejected, reconnects)


class MetricsServer:
    def __init__(self, hub: OperatorHub, host: str, port: int) -> None:
        self._hub = hub
        self._host = host
        self._port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self._copies = Counter(
            "cmamd_copies",
            "Follower actions by outcome (done, rejected, unknown, deferred)",
            ["rule", "follower", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "cmamd_copy_latency_seconds",
            "From the master's change to the follower's confirmation",
            ["follower"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._server: WSGIServer | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self._port

    async def start(self) -> None:
        self.registry.register(_StatusCollector(self._hub, asyncio.get_running_loop()))
        self._server, _thread = start_http_server(self._port, self._host, self.registry)
        log.info("metrics endpoint listening", host=self._host, port=self.port)

    def on_report(self, report: CopyReport) -> None:
        self._copies.labels(report.rule, report.follower, report.outcome).inc()
        if report.outcome == "done":
            self._latency.labels(report.follower).observe(report.latency_ms / 1000)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            # shutdown() waits for the serving thread; a scrape in progress may be
            # waiting on this loop, so do it off the loop
            await asyncio.to_thread(server.shutdown)
            server.server_close()

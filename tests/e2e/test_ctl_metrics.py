"""The Prometheus endpoint of a running daemon, scraped and compared with ``ctl status``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from ports import free_port
from prometheus_client.parser import text_string_to_metric_families

from cmamd.accounts.model import Side
from cmamd.demo.master import MasterTrader
from cmamd.sim import SimServer

from .ctl_kit import Daemons, MakeConfig, destination, operated, rule, socket_dir, started, status

__all__ = ["socket_dir"]  # the fixture, used by name


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_the_scrape_matches_ctl_status(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    port = free_port()
    config = operated(
        make_config,
        socket_dir,
        ["master", "follower-hedged", "follower-netted"],
        [rule("follower-hedged", "follower-netted")],
        {"metrics": {"listen": f"127.0.0.1:{port}"}},
        api={"max_rps": 40},
    )
    daemon = await started(daemons, config)
    sim.reject_next_orders(1, "TRADING_DISABLED", ids["follower-netted"])
    for symbol in ("EURUSD", "GBPUSD"):
        await master.market(symbol, Side.BUY, "0.10")
    await daemon.settle()

    doc = await status(socket_dir)
    samples = await asyncio.to_thread(scrape, port)
    for follower in ("follower-hedged", "follower-netted"):
        dest = destination(doc, follower)
        for outcome in ("done", "rejected"):
            counted = samples.get(
                (
                    "cmamd_copies_total",
                    frozenset({"rule": "main", "follower": follower, "outcome": outcome}.items()),
                ),
                0,
            )
            assert counted == dest[outcome], (follower, outcome)
        assert value(samples, "cmamd_copy_latency_seconds_count", follower=follower) == dest["done"]
    assert (
        destination(doc, "follower-hedged")["done"],
        destination(doc, "follower-netted")["rejected"],
    ) == (2, 1)
    assert value(samples, "cmamd_queue_depth") == doc["queue"]["depth"] == 0
    assert value(samples, "cmamd_accounts", state="ready") == 3
    assert value(samples, "cmamd_accounts", state="failed") == 0
    for account in doc["accounts"]:
        assert value(samples, "cmamd_account_ready", account=account["name"]) == 1
    (connection,) = doc["connections"]
    name = connection["name"]
    assert value(samples, "cmamd_rate_budget_limit", connection=name) == 40
    assert (
        value(samples, "cmamd_reconnects_total", connection=name) == connection["reconnects"] == 0
    )
    assert value(samples, "cmamd_rate_limit_rejections_total", connection=name) == 0
    assert await daemon.stop() == 0
    with pytest.raises(httpx.ConnectError):
        await asyncio.to_thread(scrape, port)

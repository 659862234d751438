"""Start-up of many accounts on one connection: the livelock of issue 10, at small scale.

More start-up work is queued on one connection than its request budget serves within the
request timeout. Before admission control, the queued requests timed out against their own
budget, each retry re-authorised ahead of the queries it then needed, and the accounts never
all became ready. Now every account becomes ready, READY=1 comes only then, and the asset
and symbol lists are fetched once per broker rather than once per account.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from polling import reached

from cmamd.daemon.launch import open_daemon
from cmamd.daemon.notify import SystemdNotifier
from cmamd.daemon.supervisor import Daemon
from cmamd.sim import SimConfig, SimServer
from cmamd.sim.defaults import default_config_data

from .kit import daemon_config, write_yaml

ACCOUNTS = 24
MAX_RPS = 30
REQUEST_TIMEOUT_S = 0.4  # the budget serves 12 requests within it; start-up needs ~100
ID_BASE = 4_300_000


def _sim_config(accounts: int) -> SimConfig:
    data = default_config_data()
    broker = next(b for b in data["brokers"] if b["name"] == "Demo Markets")
    return SimConfig.model_validate(
        {
            "assets": data["assets"],
            "brokers": [broker],
            "ctids": [
                {
                    "name": "manager",
                    "accounts": [
                        {
                            "name": f"acct-{i:03d}",
                            "account_id": ID_BASE + i,
                            "trader_login": ID_BASE + 1_000_000 + i,
                            "broker": broker["name"],
                            "kind": "hedged",
                            "balance": 10_000,
                        }
                        for i in range(accounts)
                    ],
                }
            ],
        }
    )


class RecordingNotifier(SystemdNotifier):
    """Notes how many accounts were ready each time READY=1 is sent."""

    def __init__(self) -> None:
        super().__init__(env={})
        self.daemon: Daemon | None = None
        self.ready_with: list[int] = []

    def ready(self) -> None:
        assert self.daemon is not None
        self.ready_with.append(sum(s.ready.is_set() for s in self.daemon.sessions.values()))


def _config(sim: SimServer, tmp_path: Path) -> dict[str, Any]:
    names = [f"acct-{i:03d}" for i in range(ACCOUNTS)]
    rules: list[dict[str, Any]] = [
        {
            "name": "fan",
            "source": names[0],
            "destinations": [
                {"account": n, "volume": {"mode": "multiplier", "value": 1}} for n in names[1:]
            ],
        }
    ]
    return daemon_config(
        sim,
        tmp_path / "state",
        tmp_path / "secret",
        names,
        rules,
        api={"request_timeout_s": REQUEST_TIMEOUT_S, "max_rps": MAX_RPS},
    )


async def test_many_accounts_on_one_connection_all_become_ready(tmp_path: Path) -> None:
    async with SimServer(_sim_config(ACCOUNTS)) as sim:
        config = _config(sim, tmp_path)
        notifier = RecordingNotifier()
        daemon = open_daemon(write_yaml(tmp_path / "c.yaml", config), environ={}, notifier=notifier)
        notifier.daemon = daemon
        started_at = time.monotonic()
        task = asyncio.create_task(daemon.run())
        # Bound: every account's start-up requests (auth, trader, symbol details, reconcile,
        # plus the shared lists) at the client's budget, with generous slack for CI load.
        bound_s = (4 * ACCOUNTS + 3) / MAX_RPS * 1.1
        try:
            async with asyncio.timeout(bound_s * 3 + 5):
                await daemon.started.wait()
            elapsed = time.monotonic() - started_at
            not_ready = [n for n, s in daemon.sessions.items() if not s.ready.is_set()]
            assert not_ready == []
            assert notifier.ready_with == [ACCOUNTS]
            assert elapsed < bound_s * 3 + 5
            lists = [r for r in sim.record if r.name == "ProtoOASymbolsListReq"]
            assert len(lists) == 1, "the symbol list is the broker's, fetched once"
            assert sim.rate_limit_rejections == 0
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 30) == 0


async def test_each_account_is_authorised_and_reconciled_once_at_start_up(
    tmp_path: Path,
) -> None:
    # The sessions start while the first link is still coming up, so the connection's
    # re-authorisation hooks run for them too. Each did the start-up chain's work a second
    # time: two account auths and two reconciles per account, 50 % more start-up requests.
    async with SimServer(_sim_config(ACCOUNTS)) as sim:
        config = _config(sim, tmp_path)
        config["api"]["request_timeout_s"] = 10.0  # no timeout: only the duplicates count
        daemon = open_daemon(
            write_yaml(tmp_path / "c.yaml", config), environ={}, notifier=SystemdNotifier(env={})
        )
        task = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(60):
                await daemon.started.wait()
            assert all(s.ready.is_set() for s in daemon.sessions.values())
            sent = Counter(r.name for r in sim.record)
            assert sent["ProtoOAAccountAuthReq"] == ACCOUNTS
            assert sent["ProtoOAReconcileReq"] == ACCOUNTS
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 30) == 0


async def test_after_a_reconnect_every_account_is_authorised_and_ready_again(
    tmp_path: Path,
) -> None:
    # The reconnect hooks re-authorise every account at once: more than the budget sends
    # within the request timeout. Before admission, the hooks' requests that timed out
    # unsent were only logged ("session hook failed") and those accounts stayed unready.
    async with SimServer(_sim_config(ACCOUNTS)) as sim:
        daemon = open_daemon(
            write_yaml(tmp_path / "c.yaml", _config(sim, tmp_path)),
            environ={},
            notifier=SystemdNotifier(env={}),
        )
        task = asyncio.create_task(daemon.run())
        bound_s = (4 * ACCOUNTS + 3) / MAX_RPS * 1.1
        try:
            async with asyncio.timeout(bound_s * 3 + 5):
                await daemon.started.wait()
            sessions = list(daemon.sessions.values())
            assert all(s.ready.is_set() for s in sessions)
            assert sim.drop_connections() == 1
            everyone = {ID_BASE + i for i in range(ACCOUNTS)}
            # authorised on the new link (so every hook ran and cleared ready), then ready
            back = await reached(
                lambda: (
                    len(sim.connections) == 2
                    and sim.connections[-1].authorised_accounts == everyone
                    and all(s.ready.is_set() for s in sessions)
                ),
                bound_s * 3 + 10,
                0.05,
            )
            assert back, [(s.name, s.status) for s in sessions if not s.ready.is_set()]
            assert sim.rate_limit_rejections == 0
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 30) == 0

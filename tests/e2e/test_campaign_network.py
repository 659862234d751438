"""The network campaign (issue 8): during a randomised master session the simulator drops
connections, sends close frames (also right after a trade's reply, mid-copy), delays and
swallows replies, at random from a printed seed. Afterwards every follower holds exactly
what its rules prescribe, and no connection went above max_rps in any 1-second window.

Short in CI; ``--full-campaigns`` runs the long version. One summary line is printed.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from cmamd.sim import SimServer

from .network_campaign import (
    CampaignLog,
    MasterSession,
    campaign_seed,
    converge,
    inject_faults,
    worst_window,
)

RULES = [
    {
        "name": "r",
        "source": "master",
        "destinations": [
            # copy however late: an outage may outlast the default 60 s
            {"account": "follower-hedged", "max_delay_s": 3600},
            {"account": "follower-suffix", "symbols": {"add_suffix": ".m"}, "max_delay_s": 3600},
        ],
    }
]
MAX_RPS = 20  # below the simulator's 50: the daemon's own budget is what is checked


async def test_network_campaign(
    sim: SimServer, ids: dict[str, int], make_config: Any, daemons: Any, full_campaigns: bool
) -> None:
    seed = campaign_seed()
    steps, step_pause, fault_pause = (
        (400, (0.05, 0.6), (0.5, 3.0))
        if full_campaigns
        else (
            40,
            (0.05, 0.3),
            (0.2, 0.8),
        )
    )
    rng = random.Random(seed)
    config = make_config(
        ["master", "follower-hedged", "follower-suffix"], RULES, api={"max_rps": MAX_RPS}
    )
    daemon = daemons(config)
    await daemon.start()
    log = CampaignLog()
    master = MasterSession(sim, ids["master"], rng, log)
    started = time.monotonic()
    faults = asyncio.create_task(inject_faults(sim, random.Random(seed + 1), log, fault_pause))
    try:
        for _ in range(steps):
            master.step()
            await asyncio.sleep(rng.uniform(*step_pause))
    finally:
        faults.cancel()
        await asyncio.gather(faults, return_exceptions=True)
    followers = {name: ids[name] for name in ("follower-hedged", "follower-suffix")}
    problems = await converge(sim, ids["master"], followers, timeout=90 if full_campaigns else 60)
    worst = worst_window(sim)
    positions = len(sim.broker.positions(ids["master"]))
    orders = len(sim.broker.orders(ids["master"]))
    wrong = sum(len(p) for p in problems.values())
    print(
        f"\nnetwork campaign: seed={seed} {'full' if full_campaigns else 'short'} "
        f"steps={steps} actions={sum(log.actions.values())} refused={log.refused} "
        f"faults={sum(log.faults.values())} {dict(sorted(log.faults.items()))} "
        f"connections={len(sim.connections)} master_positions={positions} "
        f"master_orders={orders} followers_wrong={wrong} "
        f"worst_1s_window={worst}/{MAX_RPS} elapsed_s={time.monotonic() - started:.1f}"
    )
    assert not any(problems.values()), f"seed {seed}: {problems}"
    assert worst <= MAX_RPS, f"seed {seed}: {worst} requests in one second on a connection"

"""risk_percent on a broker that names its symbols its own way: the quote -> deposit rate is
found through the follower broker's asset ids (directly, or in two steps), end to end.

The simulator's second broker ("Suffix Markets") names every symbol with a ".m" suffix;
its light symbols carry base and quote asset ids as a real server's do. A follower there
with a USD deposit converts a JPY stop through USDJPY.m; one with a EUR deposit has no
JPY/EUR pair and converts JPY -> USD -> EUR through USDJPY.m and EURUSD.m.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from cmamd.accounts.model import Side
from cmamd.demo.master import MasterTrader
from cmamd.replication.labels import label
from cmamd.sim import SimConfig, SimServer
from cmamd.sim.defaults import default_config_data

from .kit import Daemons, InProcessDaemon, MakeConfig, eventually

EURO_FOLLOWER = "follower-suffix-eur"


def with_euro_follower() -> SimConfig:
    """The demo broker plus a EUR-deposit follower on the suffixed broker."""
    ctids: list[dict[str, Any]] = default_config_data()["ctids"]
    followers = next(c for c in ctids if c["name"] == "followers")
    followers["accounts"].append(
        {
            "name": EURO_FOLLOWER,
            "account_id": 3_202_009,
            "trader_login": 7_700_209,
            "broker": "Suffix Markets",
            "kind": "hedged",
            "balance": 40_000,
            "deposit_asset": "EUR",
        }
    )
    return SimConfig.default(ctids=ctids)


def risk_rule(follower: str, percent: str) -> list[dict[str, Any]]:
    destination = {
        "account": follower,
        "volume": {"mode": "risk_percent", "value": percent},
        "symbols": {"add_suffix": ".m"},
    }
    return [{"name": "main", "source": "master", "destinations": [destination]}]


def mid(sim: SimServer, account_id: int, name: str) -> Decimal:
    """The follower broker's mid price (prices do not walk in these tests)."""
    symbol = sim.broker.symbol_named(account_id, name)
    return (Decimal(repr(symbol.bid)) + Decimal(repr(symbol.ask))) / 2


def expected_volume(
    sim: SimServer, follower: int, equity: Decimal, percent: Decimal, stop: Decimal, rate: Decimal
) -> int:
    spec = sim.broker.symbol_named(follower, "USDJPY.m")
    loss_per_lot = Decimal(spec.lot_size) / 100 * stop * rate
    lots = equity * percent / 100 / loss_per_lot
    return int(lots * spec.lot_size // spec.step_volume) * spec.step_volume


async def copy_of(
    sim: SimServer, daemon: InProcessDaemon, follower: int, master_id: int, key: str
) -> list[int]:
    await daemon.settle()
    return [p.volume for p in sim.broker.positions(follower) if p.label == label(master_id, key)]


async def test_risk_percent_on_a_suffixed_broker_converts_jpy_through_its_own_usdjpy(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
) -> None:
    suffix = ids["follower-suffix"]
    daemon = daemons(make_config(["master", "follower-suffix"], risk_rule("follower-suffix", "1")))
    await daemon.start()
    assert daemon.daemon is not None
    session = daemon.daemon.sessions["follower-suffix"]
    usdjpy_m = sim.broker.symbol_named(suffix, "USDJPY.m").symbol_id
    await eventually(lambda: usdjpy_m in session.quotes, 5, "USDJPY.m quote subscribed")

    position = await master.market("USDJPY", Side.SELL, "1.00", sl_distance=0.500)
    rate = 1 / mid(sim, suffix, "USDJPY.m")  # 1 JPY in USD
    expected = expected_volume(sim, suffix, Decimal(25_000), Decimal(1), Decimal("0.5"), rate)
    # 250 USD at risk / (100,000 x 0.5 JPY / 150.006 = 333.31 USD per lot) = 0.75 lots
    assert expected == 7_500_000
    assert await copy_of(sim, daemon, suffix, ids["master"], f"p{position}") == [expected]


class TestEuroDeposit:
    @pytest.fixture
    async def sim(self) -> AsyncIterator[SimServer]:
        async with SimServer(with_euro_follower()) as server:
            yield server

    async def test_risk_percent_converts_in_two_steps_when_the_broker_has_no_direct_pair(
        self,
        sim: SimServer,
        ids: dict[str, int],
        master: MasterTrader,
        make_config: MakeConfig,
        daemons: Daemons,
    ) -> None:
        """No JPY/EUR symbol at the follower's broker: JPY -> USD -> EUR."""
        euro = ids[EURO_FOLLOWER]
        daemon = daemons(make_config(["master", EURO_FOLLOWER], risk_rule(EURO_FOLLOWER, "2")))
        await daemon.start()
        assert daemon.daemon is not None
        session = daemon.daemon.sessions[EURO_FOLLOWER]
        needed = {sim.broker.symbol_named(euro, n).symbol_id for n in ("USDJPY.m", "EURUSD.m")}
        await eventually(lambda: needed <= session.quotes.keys(), 5, "both legs subscribed")
        assert not any(s.name.startswith(("EURJPY", "JPYEUR")) for s in sim.broker.symbols(euro))

        position = await master.market("USDJPY", Side.BUY, "1.00", sl_distance=0.400)
        rate = 1 / mid(sim, euro, "USDJPY.m") / mid(sim, euro, "EURUSD.m")  # 1 JPY in EUR
        expected = expected_volume(sim, euro, Decimal(40_000), Decimal(2), Decimal("0.4"), rate)
        # 800 EUR at risk / (100,000 x 0.4 JPY / 150.006 / 1.08005 = 246.89 EUR per lot)
        assert expected == 32_400_000
        assert await copy_of(sim, daemon, euro, ids["master"], f"p{position}") == [expected]

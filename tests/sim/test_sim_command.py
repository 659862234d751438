"""`cmamd sim` as a process, wss with a self-signed certificate, and YAML configs."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
from pathlib import Path

import pytest
from polling import reached
from pydantic import ValidationError

from cmamd.protocol.proto import messages_pb2
from cmamd.sim import SimConfig, SimServer

from .simkit import Connect, RawClient

m = messages_pb2
ROOT = Path(__file__).resolve().parents[2]

SMALL_YAML = """
client_id: yaml-app
client_secret: yaml-secret
environment: live
assets:
  - {asset_id: 1, name: USD}
  - {asset_id: 2, name: EUR}
brokers:
  - name: Tiny Broker
    symbols:
      - {symbol_id: 7, name: EURUSD, base_asset: EUR, quote_asset: USD, digits: 5,
         pip_position: 4, lot_size: 10000000, min_volume: 1000, step_volume: 1000,
         max_volume: 1000000000, bid: 1.1, ask: 1.10003}
ctids:
  - name: solo
    access_token: acc-solo
    refresh_token: ref-solo
    accounts:
      - {name: only, account_id: 4242, trader_login: 77, broker: Tiny Broker,
         kind: netted, balance: 1234.5, is_live: true}
"""


async def test_cmamd_sim_process_describes_itself_serves_and_exits_on_sigterm(
    tmp_path: Path,
) -> None:
    describe = tmp_path / "sim.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cmamd.sim",
        "--port",
        "0",
        "--describe",
        str(describe),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await reached(lambda: describe.exists() or process.returncode is not None, 10.0, 0.05)
        assert describe.exists(), "the simulator did not write its description"
        info = json.loads(describe.read_text())
        assert info["url"].startswith("ws://127.0.0.1:")
        assert {a["name"] for a in info["accounts"]} == {
            "master",
            "master-netted",
            "follower-hedged",
            "follower-suffix",
            "follower-netted",
        }
        master = next(a for a in info["accounts"] if a["name"] == "master")
        assert set(master) >= {
            "account_id",
            "is_live",
            "kind",
            "broker",
            "trader_login",
            "balance",
            "deposit_asset",
            "money_digits",
            "access_token",
            "refresh_token",
            "symbols",
        }
        client = await RawClient.open(info["url"])
        try:
            auth = await client.request(
                m.ProtoOAApplicationAuthReq(
                    clientId=info["client_id"], clientSecret=info["client_secret"]
                )
            )
            assert isinstance(auth.message, m.ProtoOAApplicationAuthRes)
            account = await client.account_auth(master["account_id"], master["access_token"])
            assert isinstance(account.message, m.ProtoOAAccountAuthRes)
        finally:
            await client.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, stderr.decode()
    assert info["url"] in stdout.decode()


async def test_wss_with_a_self_signed_certificate(
    certificate: tuple[Path, Path], tls_server_context: ssl.SSLContext, open_client: Connect
) -> None:
    cert, _ = certificate
    client_context = ssl.create_default_context(cafile=str(cert))
    sim = SimServer(SimConfig.default())
    await sim.start(ssl_context=tls_server_context)
    try:
        assert sim.url == f"wss://127.0.0.1:{sim.port}"
        client = await open_client(sim.url, ssl_context=client_context)
        await client.app_auth(sim.config)
        version = await client.request(m.ProtoOAVersionReq())
        assert isinstance(version.message, m.ProtoOAVersionRes)
    finally:
        await sim.stop()


async def test_yaml_config_defines_brokers_accounts_and_tokens(
    tmp_path: Path, open_client: Connect
) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(SMALL_YAML)
    config = SimConfig.from_yaml(path)
    async with SimServer(config) as sim:
        info = sim.describe()
        assert info["client_id"] == "yaml-app"
        [only] = info["accounts"]
        assert (only["access_token"], only["refresh_token"]) == ("acc-solo", "ref-solo")
        assert (only["kind"], only["balance"], only["symbols"]) == ("netted", 1234.5, ["EURUSD"])
        client = await open_client(sim.url)
        await client.app_auth(config)
        # A live account on a live server is routable.
        reply = await client.account_auth(4242, "acc-solo")
        assert isinstance(reply.message, m.ProtoOAAccountAuthRes)


@pytest.mark.parametrize(
    "broken, message",
    [
        ("broker: Tiny Broker", "broker: Nowhere"),
        ("bid: 1.1, ask: 1.10003", "bid: 1.1, ask: 1.100031"),
        ("min_volume: 1000", "min_volume: 1500"),
        ("kind: netted", "kind: netted, colour: blue"),
    ],
)
def test_yaml_config_errors_are_refused(tmp_path: Path, broken: str, message: str) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(SMALL_YAML.replace(broken, message))
    with pytest.raises(ValidationError):
        SimConfig.from_yaml(path)


def test_keywords_change_the_demo_broker_but_a_file_must_be_complete(tmp_path: Path) -> None:
    assert SimConfig(price_walk=True) == SimConfig.default(price_walk=True)
    assert SimConfig().account("master").account_id == 3_101_001
    path = tmp_path / "partial.yaml"
    path.write_text("client_id: a\nclient_secret: b\n")
    with pytest.raises(ValueError, match="assets, brokers, ctids"):
        SimConfig.from_yaml(path)

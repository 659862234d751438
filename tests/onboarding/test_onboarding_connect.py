"""`cmamd check-config --connect`: ok, and each failure named with what it means."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import yaml
from ports import free_port

from cmamd.sim import SimConfig, SimServer

from .kit import onboarding_config, run_cmamd

ACCOUNTS = [{"name": "f1", "account_id": 3_202_001, "live": False}]


def _edit(path: Path, **api: object) -> Path:
    data = yaml.safe_load(path.read_text())
    data["api"].update(api)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def _check(config: Path) -> tuple[int, str, str]:
    run = await run_cmamd("check-config", str(config), "--connect")
    return run.code, run.out, run.err


async def test_connect_ok(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri, ACCOUNTS)
    code, out, err = await _check(config)
    assert code == 0, out + err
    assert re.search(
        rf"connect demo: ws://127\.0\.0\.1:{sim.port}: ok \(connected and application "
        r"authenticated in \d+ ms\)",
        out,
    ), out


async def test_wrong_secret_is_explained(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri, ACCOUNTS)
    (tmp_path / "client_secret").write_text("wrong-secret")
    code, out, err = await _check(config)
    assert code == 1
    assert "FAILED: application auth refused: CH_CLIENT_AUTH_FAILURE: wrong client id or " in out
    assert "not active yet" in out
    assert "connection check FAILED" in err
    assert "wrong-secret" not in out + err


async def test_refused_connection(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    config = _edit(onboarding_config(sim, tmp_path, redirect_uri, ACCOUNTS), port=free_port())
    code, out, _ = await _check(config)
    assert code == 1
    assert "FAILED: connection refused: nothing listens there" in out


async def test_tls_certificate_not_trusted_then_trusted_with_ca_file(
    tmp_path: Path,
    redirect_uri: str,
    certificate: tuple[Path, Path],
    tls_server_context: ssl.SSLContext,
) -> None:
    cert, _ = certificate
    tls_sim = SimServer(SimConfig.default())
    await tls_sim.start(ssl_context=tls_server_context)
    try:
        config = _edit(onboarding_config(tls_sim, tmp_path, redirect_uri, ACCOUNTS), tls=True)
        code, out, _ = await _check(config)
        assert code == 1
        assert "FAILED: TLS failure: the server certificate is not trusted" in out
        assert "api.ca_file" in out
        code, out, err = await _check(_edit(config, ca_file=str(cert)))
        assert code == 0, out + err
        assert f"wss://127.0.0.1:{tls_sim.port}: ok" in out
    finally:
        await tls_sim.stop()


async def _silent_server() -> tuple[asyncio.Server, int]:
    """Accepts connections and never answers: a firewall black hole stand-in."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_timeout(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    server, port = await _silent_server()
    try:
        config = _edit(
            onboarding_config(sim, tmp_path, redirect_uri, ACCOUNTS),
            port=port,
            request_timeout_s=1,
        )
        code, out, _ = await _check(config)
    finally:
        server.close()
    assert code == 1
    assert "FAILED: no answer within" in out and "(timeout)" in out

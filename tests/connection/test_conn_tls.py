"""wss:// against the simulator with a self-signed certificate: verified, never skipped."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from cmamd.connection import Backoff, OpenApiConnection
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.sim import SimConfig, SimServer


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_wss_verifies_the_server_against_the_configured_ca(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    sim = SimServer(SimConfig.default())
    await sim.start(ssl_context=server_context)
    described = sim.describe()
    trusting = OpenApiConnection(
        sim.url,
        described["client_id"],
        described["client_secret"],
        ssl_context=ssl.create_default_context(cafile=str(cert)),
    )
    default_trust = OpenApiConnection(
        sim.url, described["client_id"], described["client_secret"], backoff=Backoff(0.01, 0.02)
    )
    try:
        assert sim.url.startswith("wss://")
        await trusting.start()
        assert isinstance(await trusting.request(pb.ProtoOAVersionReq()), pb.ProtoOAVersionRes)
        with pytest.raises(ssl.SSLCertVerificationError):
            await default_trust.start(connect_attempts=2)
    finally:
        await trusting.close()
        await default_trust.close()
        await sim.stop()
    assert len(sim.connections) == 1  # the unverified attempts never got a session

"""wss:// against the simulator with a self-signed certificate: verified, never skipped."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from cmamd.connection import Backoff, OpenApiConnection
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.sim import SimConfig, SimServer


async def test_wss_verifies_the_server_against_the_configured_ca(
    certificate: tuple[Path, Path], tls_server_context: ssl.SSLContext
) -> None:
    cert, _ = certificate
    sim = SimServer(SimConfig.default())
    await sim.start(ssl_context=tls_server_context)
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

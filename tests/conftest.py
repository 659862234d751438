"""Fixtures shared by several test folders."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (wss tests)."""
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


@pytest.fixture
def tls_server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A server's TLS context with that certificate (a client trusts it with ``cafile=cert``)."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full-campaigns",
        action="store_true",
        default=False,
        help="run the fault campaigns (kill, network, hostile) at full length",
    )


@pytest.fixture
def full_campaigns(request: pytest.FixtureRequest) -> bool:
    """True when the fault campaigns should run at full length (``--full-campaigns``)."""
    return bool(request.config.getoption("--full-campaigns"))


FULL_CAMPAIGN_TIMEOUT_S = 1800


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A full campaign runs for minutes: lift the suite's per-test timeout for those only.
    if not config.getoption("--full-campaigns"):
        return
    for item in items:
        if "full_campaigns" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(FULL_CAMPAIGN_TIMEOUT_S))

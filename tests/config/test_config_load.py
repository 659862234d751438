"""Valid configs: what they load into, secrets kept secret, round trips, the example."""

from __future__ import annotations

import io
import shutil
import ssl
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from config_kit import BASE, CLIENT_SECRET, Workspace, edit, line_of

from cmamd.config import load_config, load_config_report
from cmamd.config.check import check
from cmamd.config.diff import fingerprint_of
from cmamd.config.problems import ConfigError, format_path
from cmamd.config.rules import CopyMode, VolumeMode

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def test_base_config_loads_with_defaults(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    config = load_config(workspace.write(BASE), environ={})
    assert config.api.client_id == "1234_abc"
    assert config.api.client_secret_file == tmp_path / "client_secret"  # relative to the file
    assert config.api.resolved_client_secret.get_secret_value() == CLIENT_SECRET  # newline gone
    assert config.api.url_for(live=False) == "wss://demo.ctraderapi.com:5035"
    assert config.api.url_for(live=True) == "wss://live.ctraderapi.com:5035"
    assert config.api.max_rps == 50 and config.api.connections_for(live=True) == 1
    assert config.state_dir == Path("/var/lib/cmamd")
    assert (config.logging.level, config.logging.format) == ("info", "auto")
    assert config.shutdown_timeout_s == 20
    assert [a.name for a in config.accounts] == ["master", "follower1", "follower2"]
    assert config.account("follower2").environment == "live"
    assert config.account("master").initial_refresh_token is None
    destination = config.copy_rules[0].destinations[0]
    assert destination.volume.mode is VolumeMode.MULTIPLIER
    assert destination.volume.max_lots == Decimal(5)
    assert destination.symbols.map == {"XAUUSD": "GOLD"}
    assert destination.mode is CopyMode.ON  # YAML 1.1 reads `on` as true


def test_state_dir_comes_from_systemd_unless_given(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    path = workspace.write(BASE)
    environ = {"STATE_DIRECTORY": "/var/lib/cmamd/shard1:/var/lib/other"}
    assert load_config(path, environ=environ).state_dir == Path("/var/lib/cmamd/shard1")
    explicit = workspace.write(BASE + "state_dir: state\n")
    assert load_config(explicit, environ=environ).state_dir == tmp_path / "state"


def test_secrets_from_credentials_and_inline(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    (workspace.credentials / "client_secret").write_text("from-credential")
    (workspace.credentials / "master.refresh").write_text("refresh-from-credential\n")
    (tmp_path / "master.access").write_text("access-from-file")
    text = edit(
        BASE, "client_secret_file: client_secret", "client_secret_credential: client_secret"
    )
    text = edit(
        text,
        "    account_id: 1001\n",
        "    account_id: 1001\n    refresh_token_credential: master.refresh\n"
        "    access_token_file: master.access\n",
    )
    text = edit(
        text, "    account_id: 1002\n", "    account_id: 1002\n    refresh_token: inline-r\n"
    )
    config = load_config(workspace.write(text), environ=workspace.environ)
    assert config.api.resolved_client_secret.get_secret_value() == "from-credential"
    master, follower = config.account("master"), config.account("follower1")
    assert master.initial_refresh_token is not None and master.initial_access_token is not None
    assert master.initial_refresh_token.get_secret_value() == "refresh-from-credential"
    assert master.initial_access_token.get_secret_value() == "access-from-file"
    assert follower.initial_refresh_token is not None
    assert follower.initial_refresh_token.get_secret_value() == "inline-r"
    assert sorted(config.secret_values()) == sorted(
        ["from-credential", "refresh-from-credential", "access-from-file", "inline-r"]
    )


PLANTED = {
    "client": "PLANTED-CLIENT-aa11",
    "access_file": "PLANTED-ACCESS-bb22",
    "refresh_inline": "PLANTED-REFRESH-cc33",
    "refresh_credential": "PLANTED-REFRESH-dd44",
}


def planted_config(workspace: Workspace) -> Path:
    (workspace.root / "secret").write_text(PLANTED["client"])
    (workspace.root / "access").write_text(PLANTED["access_file"])
    (workspace.credentials / "f2.refresh").write_text(PLANTED["refresh_credential"])
    text = edit(BASE, "client_secret_file: client_secret", "client_secret_file: secret")
    text = edit(
        text,
        "    account_id: 1001\n",
        f"    account_id: 1001\n    access_token_file: access\n"
        f"    refresh_token: {PLANTED['refresh_inline']}\n",
    )
    text = edit(
        text,
        "    account_id: 1003\n",
        "    account_id: 1003\n    refresh_token_credential: f2.refresh\n",
    )
    return workspace.write(text)


def test_secrets_never_show_in_repr_str_dumps_or_check_output(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    path = planted_config(workspace)
    config = load_config(path, environ=workspace.environ)
    assert sorted(config.secret_values()) == sorted(PLANTED.values())  # they were loaded
    out, err = io.StringIO(), io.StringIO()
    assert check(path, environ=workspace.environ, out=out, err=err) == 0
    surfaces = [
        repr(config),
        str(config),
        config.model_dump_json(),
        str(config.model_dump()),
        repr(config.account("master")),
        fingerprint_of(config),
        out.getvalue(),
        err.getvalue(),
    ]
    for surface in surfaces:
        for secret in PLANTED.values():
            assert secret not in surface
    assert "inline secret" in err.getvalue()  # the inline one was noticed, not shown


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = edit(BASE, "  tls: true\n", "  tls: true\n  ca_file: null\n")
    original = load_config(workspace.write(text), environ={})
    dumped = yaml.safe_dump(original.model_dump(mode="json", by_alias=True, exclude_none=True))
    again = load_config(workspace.write(dumped, "again.yaml"), environ={})
    assert again == original
    assert fingerprint_of(again) == fingerprint_of(original)


def test_example_config_passes_check_config(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "client_secret").write_text("example-secret\n")
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    config = load_config(EXAMPLE, environ=environ)
    assert config.api.client_secret_credential == "client_secret"
    assert len(config.copy_rules[0].destinations) == 2
    out, err = io.StringIO(), io.StringIO()
    assert check(EXAMPLE, environ=environ, out=out, err=err) == 0
    assert out.getvalue().endswith("configuration OK\n")
    # no warnings in the example but its placeholders, each named at its line
    warned = err.getvalue().splitlines()
    assert len(warned) == 1 + len(config.accounts)
    assert all("placeholder" in line for line in warned)
    assert f"{EXAMPLE}:{line_of(EXAMPLE.read_text(), 'client_id:')}: api.client_id" in warned[0]


def test_warnings_are_located_and_do_not_fail(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = edit(
        BASE,
        "  - name: follower2\n",
        "  - name: idle\n    account_id: 1009\n    live: false\n  - name: follower2\n",
    )
    text = edit(text, "        mode: on\n", "        mode: frozen\n")
    text = edit(
        text,
        "    account_id: 1003\n    live: true\n",
        "    account_id: 1003\n    live: true\n    enabled: false\n",
    )
    (tmp_path / "client_secret").chmod(0o644)
    loaded = load_config_report(workspace.write(text), environ={})
    found = {(w.path, w.line): w.message for w in loaded.warnings}
    assert "frozen" in found[("copy[0].destinations[0].mode", line_of(text, "mode: frozen"))]
    assert (
        "disabled"
        in found[("copy[0].destinations[1].account", line_of(text, "- account: follower2"))]
    )
    assert "in no copy rule" in found[("accounts[2].name", line_of(text, "name: idle"))]
    assert "chmod 600" in found[("api.client_secret_file", line_of(text, "client_secret_file"))]


def test_yaml_anchors_and_merge_keys_are_fine(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = edit(
        BASE,
        "        volume: {mode: fixed_lots, value: 0.1}\n",
        "        <<: &shared {volume: {mode: fixed_lots, value: 0.1}, reverse: true}\n"
        "        reverse: false\n",
    )
    config = load_config(workspace.write(text), environ={})
    destination = config.copy_rules[0].destinations[1]
    assert destination.volume.value == Decimal("0.1")
    assert destination.reverse is False  # an explicit key overrides the merged one


def test_loopback_simulator_without_tls(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = edit(
        BASE,
        "  tls: true\n",
        "  tls: false\n  demo_host: 127.0.0.1\n  live_host: localhost\n  port: 40123\n",
    )
    loaded = load_config_report(workspace.write(text), environ={})
    api = loaded.config.api
    assert api.url_for(live=False) == "ws://127.0.0.1:40123"
    assert api.ssl_context() is None
    assert any(w.path == "api.tls" for w in loaded.warnings)


def test_tls_context_verifies_certificates(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    context = load_config(workspace.write(BASE), environ={}).api.ssl_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


OPENSSL = shutil.which("openssl")


@pytest.mark.skipif(OPENSSL is None, reason="openssl is needed to make a test CA")
def test_ca_file_is_added_to_the_tls_context(tmp_path: Path) -> None:
    assert OPENSSL is not None
    workspace = Workspace.create(tmp_path)
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.pem"),
         "-days", "1", "-subj", "/CN=cmamd-test-ca"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    text = edit(BASE, "  tls: true\n", "  tls: true\n  ca_file: ca.pem\n")
    context = load_config(workspace.write(text), environ={}).api.ssl_context()
    assert context is not None
    subjects = [str(cert.get("subject")) for cert in context.get_ca_certs()]
    assert any("'commonName', 'cmamd-test-ca'" in subject for subject in subjects)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("copy", 0, "destinations", 1, "account"), "copy[0].destinations[1].account"),
        (
            ("copy", 0, "destinations", 0, "symbols", "map", "EURUSD.m"),
            'copy[0].destinations[0].symbols.map["EURUSD.m"]',
        ),
        ((), ""),
    ],
)
def test_format_path(loc: tuple[str | int, ...], path: str) -> None:
    assert format_path(loc) == path


def test_chained_copying_is_allowed_with_a_warning(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = (
        BASE + "  - name: chain\n    source: follower1\n    destinations: [{account: follower2}]\n"
    )
    loaded = load_config_report(workspace.write(text), environ={})
    assert [rule.name for rule in loaded.config.copy_rules] == ["main", "chain"]
    chained = [w for w in loaded.warnings if "also a source" in w.message]
    assert [(w.path, w.line) for w in chained] == [
        ("copy[0].destinations[0].account", line_of(text, "- account: follower1"))
    ]


def test_oauth_urls_need_https_except_on_loopback(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)

    def with_url(url: str) -> Path:
        return workspace.write(edit(BASE, "  tls: true\n", f"  tls: true\n  token_url: {url}\n"))

    for url in ("https://openapi.ctrader.com/apps/token", "http://127.0.0.1:9/apps/token"):
        assert load_config(with_url(url), environ={}).api.token_url == url
    with pytest.raises(ConfigError, match="plain http:// only for a loopback host"):
        load_config(with_url("http://example.com/apps/token"), environ={})

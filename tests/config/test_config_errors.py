"""Broken configs: each is rejected, naming the YAML path and, where known, the line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from config_kit import BASE, CLIENT_SECRET, Workspace, edit, line_of

from cmamd.config import ConfigError, ConfigUnreadable, load_config
from cmamd.config.models import Config

RULE_B = """\
  - name: second
    source: {source}
    destinations:
      - account: {destination}
"""


def add_rule(source: str, destination: str, name: str = "second") -> Callable[[str], str]:
    return lambda text: (
        text + RULE_B.format(source=source, destination=destination).replace("second", name)
    )


def replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: edit(text, old, new)


@dataclass(frozen=True)
class Case:
    id: str
    broken: Callable[[str], str]
    path: str
    fragment: str
    marker: str | None = None  # the problem's line is the line holding this text
    occurrence: int = 1
    environ: bool = True  # False: no CREDENTIALS_DIRECTORY


CASES = [
    Case(
        "unknown top-level key", lambda t: t + "colour: blue\n", "colour", "unknown key", "colour"
    ),
    Case(
        "unknown nested key with a hint",
        replace("  tls: true\n", "  tls: true\n  tsl: false\n"),
        "api.tsl",
        "did you mean 'tls'",
        "tsl:",
    ),
    Case(
        "unknown key in a destination",
        replace("        mode: on\n", "        mode: on\n        revers: true\n"),
        "copy[0].destinations[0].revers",
        "did you mean 'reverse'",
        "revers:",
    ),
    Case(
        "wrong type: quoted integer",
        replace("account_id: 1001", 'account_id: "1001"'),
        "accounts[0].account_id",
        "valid integer",
        '"1001"',
    ),
    Case(
        "wrong type: number for a string",
        replace('client_id: "1234_abc"', "client_id: 1234"),
        "api.client_id",
        "quote the value",
        "client_id",
    ),
    Case(
        "missing required key",
        replace("    account_id: 1001\n    live: false\n", "    account_id: 1001\n"),
        "accounts[0].live",
        "missing required key",
        "- name: master",
    ),
    Case(
        "missing api section",
        lambda t: t[t.index("accounts:") :],
        "api",
        "missing required key",
    ),
    Case(
        "max_rps 51",
        replace("max_rps: 50", "max_rps: 51"),
        "api.max_rps",
        "at most 50 requests per second per connection",
        "max_rps",
    ),
    Case("max_rps 0", replace("max_rps: 50", "max_rps: 0"), "api.max_rps", "at least 1", "max_rps"),
    Case(
        "heartbeat above 10 s",
        replace("heartbeat_interval_s: 10", "heartbeat_interval_s: 11"),
        "api.heartbeat_interval_s",
        "heartbeat at least every 10 s",
        "heartbeat_interval_s",
    ),
    Case(
        "silence timeout not above heartbeat",
        replace("  tls: true\n", "  tls: true\n  silence_timeout_s: 5\n"),
        "api.silence_timeout_s",
        "longer than heartbeat_interval_s",
        "silence_timeout_s",
    ),
    Case(
        "tls off with a non-loopback host",
        replace("tls: true", "tls: false"),
        "api.tls",
        "'live.ctraderapi.com' is not one",
        "tls:",
    ),
    Case(
        "host with a scheme",
        replace("  tls: true\n", "  tls: true\n  demo_host: wss://demo.ctraderapi.com\n"),
        "api.demo_host",
        "no scheme",
        "demo_host",
    ),
    Case(
        "JSON port",
        replace("  tls: true\n", "  tls: true\n  port: 5036\n"),
        "api.port",
        "JSON port",
        "port:",
    ),
    Case(
        "connections 0",
        replace("connections: {demo: 1, live: 1}", "connections: {demo: 0, live: 1}"),
        "api.connections.demo",
        "greater than or equal to 1",
        "connections:",
    ),
    Case(
        "two secret sources",
        replace("  max_rps: 50\n", "  max_rps: 50\n  client_secret: inline-one\n"),
        "api.client_secret",
        "give only one of",
        "client_secret: inline-one",
    ),
    Case(
        "no secret source",
        replace("  client_secret_file: client_secret\n", ""),
        "api.client_secret",
        "missing: set one of client_secret_file, client_secret_credential, client_secret",
        "api:",
    ),
    Case(
        "missing secret file",
        replace("client_secret_file: client_secret", "client_secret_file: no_such_file"),
        "api.client_secret_file",
        "no_such_file: No such file",
        "client_secret_file",
    ),
    Case(
        "empty secret file",
        replace("client_secret_file: client_secret", "client_secret_file: empty_secret"),
        "api.client_secret_file",
        "empty_secret is empty",
        "client_secret_file",
    ),
    Case(
        "credential not loaded",
        replace("client_secret_file: client_secret", "client_secret_credential: client_secret"),
        "api.client_secret_credential",
        "credential 'client_secret' is not available",
        "client_secret_credential",
    ),
    Case(
        "credential without CREDENTIALS_DIRECTORY",
        replace("client_secret_file: client_secret", "client_secret_credential: client_secret"),
        "api.client_secret_credential",
        "needs $CREDENTIALS_DIRECTORY",
        "client_secret_credential",
        environ=False,
    ),
    Case(
        "missing token file",
        replace("    account_id: 1002\n", "    account_id: 1002\n    refresh_token_file: gone\n"),
        "accounts[1].refresh_token_file",
        "gone: No such file",
        "refresh_token_file",
    ),
    Case(
        "missing ca_file",
        replace("  tls: true\n", "  tls: true\n  ca_file: missing-ca.pem\n"),
        "api.ca_file",
        "cannot read",
        "ca_file",
    ),
    Case(
        "ca_file that is not a CA bundle",
        replace("  tls: true\n", "  tls: true\n  ca_file: client_secret\n"),
        "api.ca_file",
        "is not a PEM CA bundle",
        "ca_file",
    ),
    Case(
        "duplicate account name",
        replace("name: follower2", "name: follower1"),
        "accounts[2].name",
        "duplicate account name 'follower1' (also accounts[1])",
        "name: follower1",
        occurrence=2,
    ),
    Case(
        "duplicate account_id",
        replace("account_id: 1003", "account_id: 1001"),
        "accounts[2].account_id",
        "duplicate account_id 1001 (also accounts[0])",
        "account_id: 1001",
        occurrence=2,
    ),
    Case(
        "bad account name characters",
        replace("name: follower2", "name: follower 2/x"),
        "accounts[2].name",
        "1-40 characters",
        "follower 2/x",
    ),
    Case(
        "no accounts",
        lambda t: edit(t, t[t.index("accounts:") : t.index("copy:")], "accounts: []\n"),
        "accounts",
        "at least 1",
        "accounts:",
    ),
    Case(
        "unknown source account",
        replace("source: master", "source: nobody"),
        "copy[0].source",
        "unknown account 'nobody'",
        "source: nobody",
    ),
    Case(
        "unknown destination account",
        replace("- account: follower2", "- account: ghost"),
        "copy[0].destinations[1].account",
        "unknown account 'ghost'",
        "account: ghost",
    ),
    Case(
        "self-copy",
        replace("- account: follower2", "- account: master"),
        "copy[0]",
        "'master' copies to itself",
        "- name: main",
    ),
    Case(
        "cycle A -> B -> A",
        add_rule("follower1", "master"),
        "copy[1].destinations[0].account",
        "copy cycle: master -> follower1 -> master",
        "- account: master",
    ),
    Case(
        "longer cycle",
        lambda t: add_rule("follower2", "master", "third")(add_rule("follower1", "follower2")(t)),
        "copy[2].destinations[0].account",
        "copy cycle: master -> follower1 -> follower2 -> master",
        "- account: master",
    ),
    Case(
        "duplicate rule name",
        add_rule("follower1", "follower2", name="main"),
        "copy[1].name",
        "duplicate rule name 'main' (also copy[0])",
        "- name: main",
        occurrence=2,
    ),
    Case(
        "same source and destination in two rules",
        add_rule("master", "follower2"),
        "copy[1].destinations[0].account",
        "'follower2' already copies 'master' through copy[0]",
        "- account: follower2",
        occurrence=2,
    ),
    Case(
        "destination listed twice in a rule",
        replace("- account: follower2", "- account: follower1"),
        "copy[0]",
        "'follower1' is listed twice",
        "- name: main",
    ),
    Case(
        "bad volume mode",
        replace("mode: fixed_lots", "mode: lots"),
        "copy[0].destinations[1].volume.mode",
        "'multiplier'",
        "mode: lots",
    ),
    Case(
        "negative multiplier",
        replace("mode: multiplier, value: 1.0", "mode: multiplier, value: -1.0"),
        "copy[0].destinations[0].volume.value",
        "greater than 0",
        "value: -1.0",
    ),
    Case(
        "min_lots above max_lots",
        replace("min_lots: 0.01, max_lots: 5", "min_lots: 6, max_lots: 5"),
        "copy[0].destinations[0].volume",
        "min_lots (6) is above max_lots (5)",
        "min_lots: 6",
    ),
    Case(
        "include/exclude overlap",
        replace(
            'add_suffix: ".m"}', 'add_suffix: ".m", include: [EURUSD, XAUUSD], exclude: [XAUUSD]}'
        ),
        "copy[0].destinations[0].symbols",
        "both included and excluded: XAUUSD",
        "include:",
    ),
    Case(
        "mode: off",
        replace("        mode: on\n", "        mode: off\n"),
        "copy[0].destinations[0].mode",
        "a bare `off` is not a mode",
        "mode: off",
    ),
    Case(
        "rule without destinations",
        lambda t: edit(t, t[t.index("    destinations:") :], "    destinations: []\n"),
        "copy[0].destinations",
        "at least 1",
        "destinations: []",
    ),
    Case(
        "section left empty",
        lambda t: t + "logging:\n",
        "logging",
        "expected a mapping",
        "logging:",
    ),
    Case(
        "list left empty",
        lambda t: t[: t.index("copy:")] + "copy:\n",
        "copy",
        "write [] for an empty list",
        "copy:",
    ),
    Case(
        "bad logging level",
        lambda t: t + "logging: {level: loud}\n",
        "logging.level",
        "'debug', 'info', 'warning' or 'error'",
        "logging:",
    ),
    Case(
        "duplicate YAML key",
        replace("  tls: true\n", "  tls: true\n  tls: true\n"),
        "api.tls",
        "duplicate key 'tls' (first at line 7)",
        "tls: true",
        occurrence=2,
    ),
    Case(
        "duplicate YAML key inside a list item",
        replace("    account_id: 1002\n", "    account_id: 1002\n    account_id: 1004\n"),
        "accounts[1].account_id",
        "duplicate key 'account_id'",
        "account_id: 1004",
    ),
    Case(
        "YAML syntax error",
        replace("    live: true\n", "    live: [true\n"),
        "",
        "YAML syntax error at line",
        None,
    ),
    Case("empty file", lambda t: "", "", "the file is empty"),
    Case("comments only", lambda t: "# nothing here\n", "", "the file is empty"),
    Case(
        "top-level list",
        lambda t: "- api\n- accounts\n",
        "",
        "must be a mapping (key: value), not a list",
    ),
    Case("top-level scalar", lambda t: "hello\n", "", "must be a mapping (key: value), not a str"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_broken_config_is_rejected_at_its_path(case: Case, tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = case.broken(BASE)
    path = workspace.write(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=workspace.environ if case.environ else {})
    problems = caught.value.problems
    matching = [p for p in problems if p.path == case.path and case.fragment in p.message]
    assert matching, f"no {case.path!r} problem with {case.fragment!r} in:\n{caught.value}"
    if case.marker is not None:
        assert matching[0].line == line_of(text, case.marker, case.occurrence)
    rendered = str(caught.value).splitlines()
    assert all(line.startswith(str(path)) for line in rendered)
    assert CLIENT_SECRET not in str(caught.value)


def test_problems_render_as_file_line_path_message(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = edit(BASE, "mode: multiplier, value: 1.0", "mode: multiplier, value: 0")
    path = workspace.write(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=workspace.environ)
    line = line_of(text, "value: 0")
    assert str(caught.value) == (
        f"{path}:{line}: copy[0].destinations[0].volume.value: Input should be greater than 0"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = edit(edit(BASE, "max_rps: 50", "max_rps: 99"), "account_id: 1002", "account_id: -5")
    with pytest.raises(ConfigError) as caught:
        load_config(workspace.write(text), environ=workspace.environ)
    assert {p.path for p in caught.value.problems} == {"api.max_rps", "accounts[1].account_id"}


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = "api:\n  client_id: x\n  tls: [true\naccounts: []\n"
    with pytest.raises(ConfigError) as caught:
        load_config(workspace.write(text), environ={})
    (problem,) = caught.value.problems
    assert problem.line is not None and problem.line >= 3
    assert f"line {problem.line}, column" in problem.message


def test_arbitrary_python_objects_are_refused(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    text = BASE + "x: !!python/object/apply:os.system ['true']\n"
    with pytest.raises(ConfigError, match="could not determine a constructor"):
        load_config(workspace.write(text), environ={})


@pytest.mark.parametrize("kind", ["missing", "directory", "not utf-8"])
def test_unreadable_file(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "not utf-8":
        path.write_bytes(b"api: \xff\xfe\n")
    with pytest.raises(ConfigUnreadable) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}: ")


def test_direct_model_use_reports_paths_too(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    data = {
        "api": {"client_id": "x", "client_secret_file": str(workspace.root / "client_secret")},
        "accounts": [
            {"name": "a", "account_id": 1, "live": False},
            {"name": "a", "account_id": 2, "live": False},
        ],
    }
    with pytest.raises(ValueError, match=r"accounts\[1\]\.name: duplicate account name 'a'"):
        Config.model_validate(data)


def test_validation_errors_do_not_echo_inline_secrets() -> None:
    # pydantic would print a failing section's whole input, secrets included
    data = {
        "api": {"client_secret": "INLINE-ee55"},  # client_id missing
        "accounts": [{"name": "a", "account_id": "1", "live": False, "refresh_token": "RT-ff66"}],
    }
    with pytest.raises(ValueError) as caught:
        Config.model_validate(data)
    assert "api.client_id" in str(caught.value)
    assert "INLINE-ee55" not in str(caught.value)
    assert "RT-ff66" not in str(caught.value)

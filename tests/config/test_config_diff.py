"""diff_configs: what a SIGHUP reload has to touch."""

from __future__ import annotations

from pathlib import Path

from config_kit import BASE, Workspace, edit

from cmamd.config import Config, diff_configs, fingerprint_of, load_config


def load(workspace: Workspace, text: str, name: str = "config.yaml") -> Config:
    return load_config(workspace.write(text, name), environ=workspace.environ)


def test_identical_configs_have_no_diff(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    old, new = load(workspace, BASE), load(workspace, BASE, "again.yaml")
    diff = diff_configs(old, new)
    assert diff.unchanged
    assert diff.describe() == "no changes"
    assert fingerprint_of(old) == fingerprint_of(new)


def test_accounts_added_removed_and_changed(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    old = load(workspace, BASE)
    text = edit(BASE, "name: follower1", "name: follower3")
    text = edit(text, "- account: follower1", "- account: follower3")
    text = edit(text, "account_id: 1003\n    live: true", "account_id: 1004\n    live: true")
    new = load(workspace, text, "new.yaml")
    diff = diff_configs(old, new)
    assert diff.accounts_added == ["follower3"]
    assert diff.accounts_removed == ["follower1"]
    assert diff.accounts_changed == ["follower2"]
    assert diff.rules_changed
    assert not diff.api_changed and not diff.logging_changed and not diff.state_dir_changed
    assert diff.describe() == "accounts +follower3 -follower1 ~follower2; rules"


def test_bootstrap_token_source_change_is_an_account_change(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    (tmp_path / "token").write_text("refresh-1")
    text = edit(
        BASE, "    account_id: 1001\n", "    account_id: 1001\n    refresh_token_file: token\n"
    )
    old = load(workspace, text)
    (tmp_path / "token").write_text("refresh-2")  # same YAML, new file content
    diff = diff_configs(old, load(workspace, text, "again.yaml"))
    assert diff.accounts_changed == ["master"]
    assert not diff.rules_changed and not diff.api_changed


def test_enabling_an_account_is_a_change(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    old = load(workspace, BASE)
    new = load(
        workspace, edit(BASE, "    live: true\n", "    live: true\n    enabled: false\n"), "n.yaml"
    )
    assert diff_configs(old, new).accounts_changed == ["follower2"]


def test_rule_detail_change_is_a_rules_change_only(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    old = load(workspace, BASE)
    new = load(workspace, edit(BASE, "max_lots: 5", "max_lots: 4"), "new.yaml")
    diff = diff_configs(old, new)
    assert diff.rules_changed
    assert not (diff.accounts_added or diff.accounts_removed or diff.accounts_changed)
    assert not diff.api_changed


def test_rotated_client_secret_rebuilds_connections(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    old = load(workspace, BASE)
    (tmp_path / "client_secret").write_text("a-new-secret\n")
    new = load(workspace, BASE, "again.yaml")
    diff = diff_configs(old, new)
    assert diff.api_changed
    assert diff.describe() == "api"
    assert fingerprint_of(old) != fingerprint_of(new)


def test_api_logging_state_dir_and_shutdown_changes(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    old = load(workspace, BASE)
    text = edit(BASE, "max_rps: 50", "max_rps: 40")
    text += "logging: {level: debug}\nstate_dir: /srv/cmamd\nshutdown_timeout_s: 25\n"
    diff = diff_configs(old, load(workspace, text, "new.yaml"))
    assert diff.api_changed and diff.logging_changed
    assert diff.state_dir_changed and diff.shutdown_timeout_changed
    assert not diff.rules_changed
    assert diff.describe() == "api; logging; state_dir (restart needed); shutdown_timeout_s"

"""Per-destination facts of the daemon's periodic loop, computed once per config."""

from __future__ import annotations

from pathlib import Path

from cmamd.config.diff import fingerprint_of
from cmamd.config.loader import load_config
from cmamd.replication.routes_from_config import FactsCache, destination_facts

CONFIG = """
api: {client_id: app, client_secret: s, demo_host: 127.0.0.1, port: 5035, tls: false}
state_dir: {state}
accounts:
  - {name: m, account_id: 11, live: false}
  - {name: f1, account_id: 21, live: false}
  - {name: f2, account_id: 22, live: false}
copy:
  - name: r
    source: m
    destinations:
      - {account: f1, volume: {mode: multiplier, value: 1}, equity_stop: {below: 100}}
      - {account: f2, volume: {mode: multiplier, value: 2}}
"""


def test_facts_match_what_the_loop_derived_each_tick(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.replace("{state}", str(tmp_path / "state")))
    config = load_config(path, environ={})
    facts = destination_facts(config)
    rule = config.copy_rules[0]
    assert [(f.rule, f.follower) for f in facts] == [("r", "f1"), ("r", "f2")]
    assert [f.dest_id for f in facts] == ["r:11:21", "r:11:22"]
    for f, dest in zip(facts, rule.destinations, strict=True):
        expected = fingerprint_of(dest.equity_stop) if dest.equity_stop is not None else ""
        assert f.equity_stop_fingerprint == expected
    cache = FactsCache()
    first = cache.facts(config)
    assert cache.facts(config) is first, "computed once per config"
    second = cache.facts(load_config(path, environ={}))  # a reload: computed afresh
    assert second is not first
    assert [f.dest_id for f in second] == [f.dest_id for f in facts]

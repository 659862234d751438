"""The control API's pure parts: protocol, peer policy, overrides, manual-order planning,
and the operator sections of the config."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cmamd.accounts.model import AccountKind, AccountState, Position, Side, SymbolSpec, TraderInfo
from cmamd.config.models import Config
from cmamd.config.rules import CopyMode, Destination, SymbolRule, VolumeMode, VolumeRule
from cmamd.control import manual
from cmamd.control.overrides import Overrides
from cmamd.control.peer import Peer, Policy, supplementary_groups
from cmamd.control.protocol import (
    ControlError,
    ErrorCode,
    Request,
    decode_reply,
    decode_request,
    encode_error,
    encode_request,
    encode_result,
)
from cmamd.replication.labels import parse_client_order_id, parse_label
from cmamd.replication.planner import CopyTarget
from cmamd.state.store import StateStore


# protocol -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "args", "fragment"),
    [
        ("pause", {}, "missing argument 'target'"),
        ("pause", {"target": ""}, "'target' is a non-empty string"),
        ("mode", {"follower": "f"}, "missing argument 'mode'"),
        ("retry", {"account": 7}, "'account' is a non-empty string"),
        ("order", {"side": "buy"}, "missing argument 'symbol'"),
        ("order", {"side": "buy", "symbol": "EURUSD"}, "lots is a positive number"),
        ("order", {"side": "buy", "symbol": "X", "lots": "NaN"}, "lots is a positive number"),
        ("order", {"side": "buy", "symbol": "X", "lots": 1, "sl_pips": -2}, "sl_pips is a"),
        ("order", {"side": "buy", "symbol": "X", "lots": 1}, "give either accounts or group"),
        ("close", {"group": "g", "accounts": ["a"]}, "give either accounts or group"),
        ("close", {"accounts": []}, "'accounts' is a list of names"),
    ],
)
async def test_action_arguments_are_checked_and_refused_by_name(
    action: str, args: dict[str, Any], fragment: str
) -> None:
    # checked before anything of the daemon is touched, without python's asserts (-O)
    from types import SimpleNamespace

    from cmamd.control import actions

    hub = SimpleNamespace(daemon=SimpleNamespace(config=SimpleNamespace(groups=[])))
    with pytest.raises(ControlError) as refused:
        await actions.run(hub, Request(action, args))  # type: ignore[arg-type]
    assert refused.value.code is ErrorCode.BAD_REQUEST
    assert fragment in refused.value.message


def test_a_request_round_trips_and_replies_decode() -> None:
    request = Request("pause", {"target": "f1"}, 7)
    assert decode_request(encode_request(request)) == request
    assert decode_reply(encode_result(7, {"paused": True})).result == {"paused": True}
    error = decode_reply(encode_error(7, ErrorCode.UNKNOWN_ACCOUNT, "no f9"))
    assert (error.ok, error.code, error.message) == (False, "unknown_account", "no f9")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json\n", ErrorCode.BAD_REQUEST),
        (b"[1, 2]\n", ErrorCode.BAD_REQUEST),
        (b'{"v": 2, "action": "status"}\n', ErrorCode.UNSUPPORTED_VERSION),
        (b'{"action": "status"}\n', ErrorCode.UNSUPPORTED_VERSION),
        (b'{"v": 1}\n', ErrorCode.BAD_REQUEST),
        (b'{"v": 1, "action": "shutdown"}\n', ErrorCode.UNKNOWN_ACTION),
        (b'{"v": 1, "action": "status", "args": [1]}\n', ErrorCode.BAD_REQUEST),
        (b'{"v": 1, "action": "status", "id": {"x": 1}}\n', ErrorCode.BAD_REQUEST),
        (b"\xff\xfe\n", ErrorCode.BAD_REQUEST),
    ],
)
def test_bad_requests_are_refused_with_a_stable_code(line: bytes, code: ErrorCode) -> None:
    with pytest.raises(ControlError) as caught:
        decode_request(line)
    assert caught.value.code is code


def test_the_version_error_says_which_version_is_spoken() -> None:
    with pytest.raises(ControlError, match="speaks 1"):
        decode_request(json.dumps({"v": 2, "action": "status"}).encode())


# peer policy ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (Peer(1, 0, 0), True),  # root
        (Peer(1, 1000, 1000), True),  # the daemon's own user
        (Peer(1, 2000, 555), True),  # primary group is the control group
        (Peer(1, 2000, 2000, frozenset({7, 555})), True),  # supplementary group
        (Peer(1, 2000, 2000, frozenset({7})), False),
        (Peer(1, 2000, 2000), False),
    ],
)
def test_peers_are_allowed_by_uid_or_control_group(peer: Peer, allowed: bool) -> None:
    assert Policy(daemon_uid=1000, group_gid=555).allows(peer) is allowed


def test_without_a_control_group_only_root_and_the_daemon_user_get_in() -> None:
    policy = Policy(daemon_uid=1000)
    assert policy.allows(Peer(1, 1000, 9)) and policy.allows(Peer(1, 0, 9))
    assert not policy.allows(Peer(1, 2000, 555, frozenset({555})))


def test_supplementary_groups_come_from_proc_status(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text("Name:\tctl\nGroups:\t4 27 555 \nNSpid:\t42\n")
    assert supplementary_groups(42, tmp_path) == {4, 27, 555}
    assert supplementary_groups(43, tmp_path) == frozenset(), "unreadable: no extra groups"


# overrides ------------------------------------------------------------------------------
def _target(mode: CopyMode = CopyMode.ON, liquidate: bool = False) -> CopyTarget:
    return CopyTarget("main", Destination(account="f1", mode=mode), 1, 2, 0, liquidate)


def test_overrides_precedence_and_persistence(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        overrides = Overrides(store)
        target = _target()
        assert overrides.apply(target, "d") is target
        assert overrides.effective(target, "d", CopyMode.ON).source == "yaml"

        overrides.set_rule_paused("main", True)
        applied = overrides.apply(target, "d")
        assert applied.dest.mode is CopyMode.CLOSE_ONLY and not applied.liquidate
        effective = overrides.effective(applied, "d", CopyMode.ON)
        assert (effective.mode, effective.source) == ("close_only", "ctl pause")

        overrides.set_mode(2, CopyMode.FROZEN, ["d"])
        assert overrides.apply(target, "d").dest.mode is CopyMode.FROZEN
        assert overrides.effective(target, "d", CopyMode.ON).source == "ctl"

        overrides.set_flattened("d")
        flattened = overrides.apply(target, "d")
        # liquidation needs a mode that plans closes: frozen plans nothing at all
        assert flattened.liquidate and flattened.dest.mode is CopyMode.CLOSE_ONLY
        assert overrides.effective(flattened, "d", CopyMode.ON).mode == "frozen"
        assert overrides.apply(target, "other").dest.mode is CopyMode.FROZEN

    with StateStore.open(tmp_path) as store:  # a restart
        overrides = Overrides(store)
        assert overrides.apply(target, "d").liquidate
        overrides.set_mode(2, CopyMode.ON, ["d"])  # an explicit mode ends the flatten
        overrides.set_rule_paused("main", False)
        assert overrides.apply(target, "d") is target


def test_an_equity_stop_wins_over_every_override(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        overrides = Overrides(store)
        overrides.set_mode(2, CopyMode.ON, [])
        stopped = _target(liquidate=True)
        assert overrides.apply(stopped, "d") is stopped
        assert overrides.effective(stopped, "d", CopyMode.ON).source == "equity stop"


# manual orders --------------------------------------------------------------------------
def _spec(name: str, symbol_id: int, **kw: Any) -> SymbolSpec:
    values: dict[str, Any] = {
        "digits": 5,
        "pip_position": 4,
        "lot_size": 10_000_000,
        "min_volume": 100_000,
        "step_volume": 100_000,
        "max_volume": 1_000_000_000,
    }
    return SymbolSpec(symbol_id, name, **{**values, **kw})


def _state(account_id: int, *specs: SymbolSpec, positions: list[Position] = ()) -> AccountState:  # type: ignore[assignment]
    state = AccountState(account_id)
    state.trader = TraderInfo(account_id, Decimal(10_000), 2, AccountKind.HEDGED)
    state.symbols_by_id = {s.symbol_id: s for s in specs}
    state.symbols_by_name = {s.name: s for s in specs}
    state.positions = {p.position_id: p for p in positions}
    return state


@pytest.mark.parametrize("scope", ["accounts", "desk", "g.1-x_y", "p1", "o2", "cm"])
def test_manual_labels_and_ids_never_parse_as_copies(scope: str) -> None:
    for ref in ("00000000", "ffffffff", manual.new_ref()):
        text = manual.manual_label(scope, ref)
        assert parse_label(text) is None and manual.is_manual(text)
        assert parse_client_order_id(f"ctl-{ref}-1") is None


def test_orders_are_mapped_and_sized_per_member() -> None:
    states = {
        "a": _state(1, _spec("EURUSD", 1)),
        "b": _state(2, _spec("EURUSD.m", 101)),
        "c": _state(3, _spec("EURUSD", 1, min_volume=10_000_000)),
        "d": _state(4, _spec("EURUSD", 1)),
    }
    members = [
        manual.Member("a", VolumeRule(), SymbolRule(), "per_account"),
        manual.Member(
            "b", VolumeRule(value=Decimal(2)), SymbolRule(add_suffix=".m"), "per_account"
        ),
        manual.Member("c", VolumeRule(), SymbolRule(), "per_account"),
        manual.Member(
            "d",
            VolumeRule(mode=VolumeMode.FIXED_LOTS, value=Decimal("0.05")),
            SymbolRule(),
            "per_account",
        ),
    ]
    planned = {
        p.account: p
        for p in manual.plan_orders(members, states, "EURUSD", Decimal("0.35"), Decimal(20), None)
    }
    assert (planned["a"].symbol_id, planned["a"].volume) == (1, 3_500_000)
    assert (planned["b"].symbol, planned["b"].volume) == ("EURUSD.m", 7_000_000)
    assert planned["c"].symbol_id is None and "minimum" in planned["c"].detail
    assert planned["d"].volume == 500_000
    assert planned["a"].relative_sl == 200 and planned["a"].relative_tp is None


def test_as_given_ignores_member_sizing_and_pips_land_on_the_price_grid() -> None:
    states = {"j": _state(1, _spec("USDJPY", 5, digits=3, pip_position=2))}
    member = manual.Member("j", VolumeRule(value=Decimal(3)), SymbolRule(), "as_given")
    (planned,) = manual.plan_orders(
        [member], states, "USDJPY", Decimal("0.1"), Decimal("12.34"), None
    )
    assert planned.volume == 1_000_000
    assert planned.relative_sl == 12_300  # 12.34 pips = 0.1234 -> 0.123 on a 3-digit grid


def test_close_plans_only_manual_positions_on_the_mapped_symbol() -> None:
    eur, gbp = _spec("EURUSD.m", 101), _spec("GBPUSD.m", 102)
    positions = [
        Position(1, 101, Side.BUY, 100_000, 1.1, label="ctl:desk:aa"),
        Position(2, 101, Side.BUY, 100_000, 1.1, label="cm:3101001:p5"),  # a copy
        Position(3, 101, Side.BUY, 100_000, 1.1, label=""),  # the user's own
        Position(4, 102, Side.BUY, 100_000, 1.3, label="ctl:accounts:bb"),
    ]
    states = {"b": _state(2, eur, gbp, positions=positions)}
    member = manual.Member("b", VolumeRule(), SymbolRule(add_suffix=".m"))
    assert [c.position_id for c in manual.plan_closes([member], states, "EURUSD")] == [1]
    assert [c.position_id for c in manual.plan_closes([member], states, None)] == [1, 4]


# config ---------------------------------------------------------------------------------
def _config(**extra: Any) -> dict[str, Any]:
    return {
        "api": {"client_id": "id", "client_secret": "s3cret-value"},
        "state_dir": "/tmp/state",
        "accounts": [
            {"name": "a", "account_id": 1, "live": False},
            {"name": "b", "account_id": 2, "live": False},
        ],
        **extra,
    }


def test_operator_sections_default_off_and_validate() -> None:
    config = Config.model_validate(_config())
    assert config.metrics is None and not config.alerts.any_sink and config.groups == []
    assert config.control.enabled and config.control.socket is None
    config = Config.model_validate(
        _config(
            metrics={"listen": "127.0.0.1:9464"},
            groups=[{"name": "g", "members": [{"account": "a"}, {"account": "b"}]}],
            alerts={
                "telegram": {"chat_id": "42", "token": "123:abc"},
                "webhook": {"url": "http://127.0.0.1:8080/hook"},
                "command": {"argv": ["/usr/bin/logger", "-t", "cmamd"]},
            },
        )
    )
    assert config.metrics is not None and config.metrics.port == 9464
    assert "123:abc" in config.secret_values(), "the bot token is redacted from logs"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"groups": [{"name": "g", "members": [{"account": "z"}]}]}, "unknown account 'z'"),
        ({"groups": [{"name": "g", "members": [{"account": "a"}, {"account": "a"}]}]}, "twice"),
        (
            {"groups": [{"name": "g", "members": [{"account": "a"}]}] * 2},
            "duplicate group name",
        ),
        (
            {
                "groups": [
                    {"name": "g", "members": [{"account": "a", "volume": {"mode": "equity_ratio"}}]}
                ]
            },
            "multiplier or fixed_lots",
        ),
        ({"alerts": {"webhook": {"url": "http://example.com/x"}}}, "https://"),
        ({"alerts": {"command": {"argv": ["notify-send"]}}}, "absolute path"),
        ({"alerts": {"telegram": {"chat_id": "1"}}}, "token"),
        ({"metrics": {"listen": "9464"}}, "host:port"),
        ({"control": {"socket": "/tmp/" + "x" * 120}}, "at most 107 bytes"),
        ({"control": {"group": "bad group"}}, "group name"),
    ],
)
def test_operator_section_mistakes_are_named(extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Config.model_validate(_config(**extra))


# control journal ------------------------------------------------------------------------
def test_the_control_journal_keeps_the_latest_actions_in_a_bounded_ring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cmamd.control import audit

    monkeypatch.setattr(audit, "KEPT", 5)
    with StateStore.open(tmp_path) as store:
        journal = audit.ControlJournal(store)
        for n in range(12):
            journal.record(1000, 42, "pause", {"target": f"f{n}"}, "ok", "")
        assert len(store.meta_items("ctl:journal:")) == 5
    with StateStore.open(tmp_path) as store:  # kept across restarts
        recent = audit.ControlJournal(store).recent(3)
    assert [e["args"]["target"] for e in recent] == ["f9", "f10", "f11"]
    assert [e["seq"] for e in recent] == [10, 11, 12]
    assert recent[0]["uid"] == 1000 and recent[0]["result"] == "ok"


def test_group_membership_also_comes_from_the_group_database() -> None:
    """With ProtectProc=invisible the daemon cannot read an operator's /proc entry."""
    import grp
    import os
    import pwd

    from cmamd.control.peer import groups_of_user

    me = pwd.getpwuid(os.getuid())
    expected = {g.gr_gid for g in grp.getgrall() if me.pw_name in g.gr_mem} | {me.pw_gid}
    assert groups_of_user(me.pw_uid, me.pw_gid) == expected
    assert groups_of_user(2**31 - 7, 12345) == frozenset(), "an unknown uid has no groups"


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [
        ("send_timeout", "not_sent"),
        ("closed", "not_sent"),
        ("unknown", "unknown"),
        ("refused", "rejected"),
    ],
)
async def test_a_manual_order_reports_each_fault_for_its_account(raised: str, outcome: str) -> None:
    from types import SimpleNamespace

    from cmamd.connection.errors import ConnectionClosedError, SendTimeout
    from cmamd.protocol.errors import OpenApiError, OutcomeUnknown

    errors = {
        "send_timeout": SendTimeout("not sent within 2 s"),
        "closed": ConnectionClosedError("link closed"),
        "unknown": OutcomeUnknown("no answer"),
        "refused": OpenApiError("NOT_ENOUGH_MONEY", "no money"),
    }

    async def request(*args: Any, **kw: Any) -> Any:
        raise errors[raised]

    session = SimpleNamespace(connection=SimpleNamespace(request=request), account_id=1)
    order = manual.PlannedOrder("a", 1, "EURUSD", 1, 100_000, "0.01")
    result = await manual.send_order(session, order, Side.BUY, "ctl:x:1", "ctl-1-1")  # type: ignore[arg-type]
    assert result["outcome"] == outcome and result["detail"]


def test_check_config_summarises_the_operator_sections_without_secrets() -> None:
    from cmamd.config.check import summary

    plain = summary(Config.model_validate(_config()))
    assert "control: socket $RUNTIME_DIRECTORY or state dir; root and the daemon's user" in plain
    assert "alerts: logged only (no sink)" in plain and "metrics: off" in plain
    full = summary(
        Config.model_validate(
            _config(
                control={"socket": "/run/x/c.sock", "group": "ops"},
                groups=[
                    {
                        "name": "desk",
                        "sizing": "per_account",
                        "members": [{"account": "a"}, {"account": "b"}],
                    }
                ],
                alerts={"telegram": {"chat_id": "1", "token": "123:TOKEN"}, "repeat_after_s": 60},
                metrics={"listen": "127.0.0.1:9464"},
            )
        )
    )
    assert "control: socket /run/x/c.sock; root, the daemon's user, group ops" in full
    assert "group desk (per_account): a, b" in full
    assert "alerts: telegram; at most one per cause and account per 60 s" in full
    assert "metrics: 127.0.0.1:9464" in full and "TOKEN" not in full


def test_an_inline_or_readable_bot_token_is_warned_about(tmp_path: Path) -> None:
    inline = Config.model_validate(_config(alerts={"telegram": {"chat_id": "1", "token": "1:T"}}))
    assert (
        ("alerts", "telegram", "token"),
        "inline secret: prefer token_credential or token_file",
    ) in inline.warnings()
    token = tmp_path / "bot"
    token.write_text("1:T\n")
    token.chmod(0o644)
    loose = Config.model_validate(
        _config(alerts={"telegram": {"chat_id": "1", "token_file": str(token)}})
    )
    assert any(loc == ("alerts", "telegram", "token_file") for loc, _ in loose.warnings())
    token.chmod(0o600)
    assert not any(loc[0] == "alerts" for loc, _ in loose.warnings())

"""Alerts from a running daemon reach a local fake Telegram API, a local webhook and an
executable; a sink that hangs or fails does not slow the copies down."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from cmamd.accounts.model import Side
from cmamd.alerts import bus, dispatcher
from cmamd.demo.master import MasterTrader
from cmamd.replication.executor import CopyReport
from cmamd.sim import SimServer

from .ctl_kit import Daemons, MakeConfig, copies, operated, rule, socket_dir, started
from .http_fakes import FakeHttp
from .kit import FAST_LOOP, eventually

__all__ = ["socket_dir"]  # the fixture, used by name


def alerting(
    make_config: MakeConfig,
    socket_dir: Path,
    tmp_path: Path,
    telegram: FakeHttp,
    hook: FakeHttp,
    accounts: list[str],
) -> tuple[Path, Path]:
    """A config whose alerts go to the two fakes and to a script appending to a file."""
    out = tmp_path / "alerts.jsonl"
    script = tmp_path / "alert-sink.py"
    script.write_text(
        "import sys\nwith open(sys.argv[1], 'a') as f:\n    f.write(sys.stdin.read() + '\\n')\n"
    )
    token = tmp_path / "telegram_token"
    token.write_text("4242:BOT-TOKEN\n")
    alerts = {
        "repeat_after_s": 0,
        "timeout_s": 2,
        "telegram": {"chat_id": "-100", "token_file": str(token), "api_url": telegram.url},
        "webhook": {"url": f"{hook.url}/hook"},
        "command": {"argv": [sys.executable, str(script), str(out)]},
    }
    followers = [a for a in accounts if a != "master"]
    config = operated(make_config, socket_dir, accounts, [rule(*followers)], {"alerts": alerts})
    return config, out


def causes_in(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["cause"] for line in path.read_text().splitlines() if line]


def telegram_texts(fake: FakeHttp) -> list[str]:
    return [body["text"] for _, body in fake.posts]


async def test_alerts_reach_telegram_a_webhook_and_a_program(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeHttp() as telegram, FakeHttp() as hook:
        config, out = alerting(
            make_config,
            socket_dir,
            tmp_path,
            telegram,
            hook,
            ["master", "follower-hedged", "follower-netted"],
        )
        data = yaml.safe_load(config.read_text())
        broken = next(a for a in data["accounts"] if a["name"] == "follower-netted")
        broken["access_token"] = broken["refresh_token"] = "revoked"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        daemon = await started(daemons, config)
        await eventually(lambda: "account_reauth" in causes_in(out), 10, "re-authorisation alert")

        sim.reject_next_orders(1, "TRADING_DISABLED", ids["follower-hedged"])
        await master.market("EURUSD", Side.BUY, "0.10")
        await daemon.settle()
        await eventually(lambda: "copy_refused" in causes_in(out), 10, "refusal alert")
        # what issue 7's foreign-copier detection calls, from wherever it runs
        bus.emit(
            "foreign_copier",
            "follower-hedged holds trades of another copier",
            {"account": "follower-hedged"},
        )
        await eventually(lambda: "foreign_copier" in causes_in(out), 10, "foreign copier alert")
        await eventually(lambda: len(hook.posts) >= 2 and len(telegram.posts) >= 2, 10, "sinks")
        assert await daemon.stop() == 0

        assert causes_in(out) == [
            "account_reauth",
            "copy_refused",
            "foreign_copier",
            "daemon_stopping",
        ]
        assert [body["cause"] for _, body in hook.posts] == causes_in(out)
        assert {path for path, _ in hook.posts} == {"/hook"}
        refused = next(body for _, body in hook.posts if body["cause"] == "copy_refused")
        assert refused["details"]["code"] == "TRADING_DISABLED"
        assert refused["details"]["follower"] == "follower-hedged"
        assert {path for path, _ in telegram.posts} == {"/bot4242:BOT-TOKEN/sendMessage"}
        assert any("follower-netted" in text for text in telegram_texts(telegram))
        assert all(body["chat_id"] == "-100" for _, body in telegram.posts)
    assert "BOT-TOKEN" not in capsys.readouterr().out, "the bot token never reaches a log line"


async def test_a_hanging_telegram_and_a_failing_webhook_do_not_delay_copies(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatcher, "STOP_FLUSH_S", 0.5)
    with FakeHttp("hang") as telegram, FakeHttp("fail") as hook:
        config, out = alerting(
            make_config, socket_dir, tmp_path, telegram, hook, ["master", "follower-hedged"]
        )
        reports: list[CopyReport] = []
        daemon = daemons(config)
        await daemon.start()
        assert daemon.daemon is not None
        daemon.daemon._on_report = reports.append
        # every copy refused: an alert per copy while Telegram hangs and the webhook fails
        sim.reject_next_orders(3, "TRADING_DISABLED", ids["follower-hedged"])
        for symbol in ("EURUSD", "GBPUSD", "USDJPY"):
            await master.market(symbol, Side.BUY, "0.10")
        await daemon.settle()
        await eventually(lambda: causes_in(out).count("copy_refused") == 3, 10, "alerts")
        assert len(telegram.posts) == 1, "Telegram hangs on the first alert"
        started_at = time.monotonic()
        for symbol in ("EURUSD", "GBPUSD", "USDJPY"):
            await master.market(symbol, Side.SELL, "0.10")
        await daemon.settle()
        assert len(copies(sim, ids["follower-hedged"], ids["master"])) == 3
        done = [r for r in reports if r.outcome == "done"]
        assert len(done) == 3 and max(r.latency_ms for r in done) < 500, done
        assert time.monotonic() - started_at < 5
        assert hook.posts, "the failing webhook was tried"
        stopping = time.monotonic()
        assert await daemon.stop() == 0
        assert time.monotonic() - stopping < 5, "a hanging sink does not hold the shutdown"


async def test_an_equity_stop_is_alerted_once(
    sim: SimServer,
    ids: dict[str, int],
    master: MasterTrader,
    make_config: MakeConfig,
    daemons: Daemons,
    socket_dir: Path,
) -> None:
    daemons = functools.partial(daemons, timing=FAST_LOOP)
    with FakeHttp() as hook:
        config = operated(
            make_config,
            socket_dir,
            ["master", "follower-hedged"],
            [
                rule(
                    "follower-hedged",
                    volume={"mode": "multiplier", "value": 2},
                    equity_stop={"below": 45_000},
                )
            ],
            {"alerts": {"webhook": {"url": f"{hook.url}/hook"}, "causes": ["equity_stop"]}},
        )
        daemon = await started(daemons, config)
        await master.market("EURUSD", Side.BUY, "1.00")
        await daemon.settle()
        sim.set_price("EURUSD", 1.03000, 1.03010)  # 2 lots lose 10,000 of the 50,000
        await eventually(lambda: sim.broker.positions(ids["follower-hedged"]) == [], 10, "stop")
        await eventually(lambda: len(hook.posts) == 1, 10, "equity stop alert")
        assert await daemon.stop() == 0
    ((_, body),) = hook.posts  # once, and daemon_stopping is not among the chosen causes
    assert body["cause"] == "equity_stop"
    assert body["details"]["follower"] == "follower-hedged" and "EQUITY STOP" in body["text"]

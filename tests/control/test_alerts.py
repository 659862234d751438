"""Alert delivery: the dispatcher (dedup, retries, never blocking) with fake sinks, and
the real sinks against a local fake Telegram API, a local webhook and an executable."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e.http_fakes import FakeHttp
from polling import wait_until
from pydantic import SecretStr

from cmamd.alerts import dispatcher as dispatcher_module
from cmamd.alerts.dispatcher import AlertDispatcher, RateGate
from cmamd.alerts.sinks import Command, SinkError, TelegramBot, Webhook
from cmamd.config.operating import AlertsConfig, CommandSink, TelegramSink, WebhookSink


class FakeSink:
    def __init__(self, name: str, behaviour: str = "ok") -> None:
        self.name = name
        self.behaviour = behaviour
        self.got: list[dict[str, Any]] = []
        self.attempts = 0
        self.release = asyncio.Event()

    async def send(self, alert: dict[str, Any]) -> None:
        self.attempts += 1
        if self.behaviour == "hang":
            await self.release.wait()
        if self.behaviour == "fail":
            raise SinkError(f"{self.name}: HTTP 500")
        self.got.append(alert)

    async def close(self) -> None:
        return None


def test_the_rate_gate_lets_one_through_per_interval_and_counts_the_rest() -> None:
    now = [100.0]
    gate = RateGate(60, lambda: now[0])
    assert gate.admit("copy_refused", "f1") == (True, 0)
    assert gate.admit("copy_refused", "f1") == (False, 0)
    assert gate.admit("copy_refused", "f2") == (True, 0), "another subject is another alert"
    assert gate.admit("equity_stop", "f1") == (True, 0), "another cause too"
    now[0] += 61
    assert gate.admit("copy_refused", "f1") == (True, 1)


async def test_a_hanging_sink_neither_blocks_the_caller_nor_the_other_sinks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatcher_module, "STOP_FLUSH_S", 0.2)
    hanging, failing, working = FakeSink("hang", "hang"), FakeSink("fail", "fail"), FakeSink("ok")
    dispatcher = AlertDispatcher(
        AlertsConfig(repeat_after_s=0), sinks=[hanging, failing, working], backoff_s=0.01
    )
    dispatcher.start()
    started = time.monotonic()
    for n in range(5):
        dispatcher.alert("copy_refused", f"refused {n}", {"follower": "f1"})
    assert time.monotonic() - started < 0.05, "alert() returns at once"
    await wait_until(lambda: len(working.got) == 5, 5.0)
    await wait_until(lambda: failing.attempts == 5 * 4, 5.0)  # every alert tried 4 times
    assert dispatcher.failed == 5
    assert hanging.attempts == 1, "the hanging sink is stuck on its first alert only"
    assert [a["text"] for a in working.got] == [f"refused {n}" for n in range(5)]
    await dispatcher.stop()  # bounded, even with a sink hanging


async def test_repeats_are_held_back_and_unselected_causes_only_logged() -> None:
    sink = FakeSink("ok")
    config = AlertsConfig(repeat_after_s=3600, causes=["equity_stop"])
    dispatcher = AlertDispatcher(config, sinks=[sink])
    dispatcher.start()
    dispatcher.alert("equity_stop", "stop on f1", {"follower": "f1"})
    dispatcher.alert("equity_stop", "stop on f1 again", {"follower": "f1"})
    dispatcher.alert("copy_refused", "refused", {"follower": "f1"})
    await dispatcher.stop()
    assert [a["text"] for a in sink.got] == ["stop on f1"]
    assert set(sink.got[0]) == {"cause", "text", "details", "time", "host"}


async def test_telegram_webhook_and_command_sinks_deliver(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    script = tmp_path / "sink.py"
    script.write_text("import sys\nopen(sys.argv[1], 'w').write(sys.stdin.read())\n")
    alert = {"cause": "equity_stop", "text": "EQUITY STOP on f1", "details": {"follower": "f1"}}
    with FakeHttp() as telegram, FakeHttp() as hook:
        bot = TelegramBot(
            TelegramSink(chat_id="-100", token=SecretStr("123:SECRET"), api_url=telegram.url), 5
        )
        webhook = Webhook(WebhookSink(url=f"{hook.url}/alerts"), 5)
        command = Command(CommandSink(argv=[sys.executable, str(script), str(out)]), 5)
        for sink in (bot, webhook, command):
            await sink.send(alert)
            await sink.close()
        assert telegram.posts == [
            (
                "/bot123:SECRET/sendMessage",
                {"chat_id": "-100", "text": "cmamd [equity_stop] EQUITY STOP on f1"},
            )
        ]
        assert hook.posts == [("/alerts", alert)]
    assert json.loads(out.read_text()) == alert


async def test_sink_failures_say_what_without_the_token(tmp_path: Path) -> None:
    with FakeHttp("fail") as telegram:
        bot = TelegramBot(
            TelegramSink(chat_id="1", token=SecretStr("123:SECRET"), api_url=telegram.url), 5
        )
        with pytest.raises(SinkError, match="HTTP 500") as caught:
            await bot.send({"cause": "x", "text": "y"})
        await bot.close()
    assert "SECRET" not in str(caught.value)
    unreachable = TelegramBot(
        TelegramSink(chat_id="1", token=SecretStr("123:SECRET"), api_url="http://127.0.0.1:9"), 2
    )
    with pytest.raises(SinkError) as caught:
        await unreachable.send({"cause": "x", "text": "y"})
    await unreachable.close()
    assert "SECRET" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    failing = Command(CommandSink(argv=[sys.executable, "-c", "import sys; sys.exit(3)"]), 5)
    with pytest.raises(SinkError, match="exited 3"):
        await failing.send({"cause": "x"})
    slow = Command(CommandSink(argv=[sys.executable, "-c", "import time; time.sleep(30)"]), 0.3)
    with pytest.raises(SinkError, match="did not finish"):
        await slow.send({"cause": "x"})


async def test_refused_copies_and_a_close_refused_again_and_again_raise_alerts(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from cmamd.config.models import Config
    from cmamd.control.hub import CLOSE_REFUSALS_TO_ALERT, OperatorHub
    from cmamd.replication.executor import CopyReport
    from cmamd.state.store import StateStore

    config = Config.model_validate(
        {
            "api": {"client_id": "id", "client_secret": "s3cret-value"},
            "state_dir": str(tmp_path),
            "accounts": [{"name": "f1", "account_id": 1, "live": False}],
        }
    )
    with StateStore.open(tmp_path) as store:
        hub = OperatorHub(SimpleNamespace(store=store, config=config), {})  # type: ignore[arg-type]
        sink = FakeSink("ok")
        hub.alerts = AlertDispatcher(AlertsConfig(repeat_after_s=0), sinks=[sink])
        hub.alerts.start()

        def report(action: str, outcome: str, key: str = "p1") -> CopyReport:
            return CopyReport(
                "main",
                "f1",
                key,
                action,
                f"{action} {key}",
                None,
                outcome,
                5.0,
                "MARKET_CLOSED" if outcome == "rejected" else "",
            )

        hub.on_report(report("OpenPosition", "rejected", "p9"))
        for _ in range(CLOSE_REFUSALS_TO_ALERT - 1):
            hub.on_report(report("ClosePosition", "rejected"))
        hub.on_report(report("ClosePosition", "done", "p2"))  # another item: no reset
        hub.on_report(report("ClosePosition", "rejected"))
        hub.on_report(report("ClosePosition", "done"))  # closed at last: the count restarts
        hub.on_report(report("ClosePosition", "rejected"))
        await hub.alerts.stop()
    assert [a["cause"] for a in sink.got] == ["copy_refused", "close_refused"]
    assert sink.got[1]["details"]["master_item"] == "p1"
    assert f"refused {CLOSE_REFUSALS_TO_ALERT} times" in sink.got[1]["text"]


async def test_the_bus_reaches_the_running_hub_and_only_logs_without_one() -> None:
    from cmamd.alerts import bus

    got: list[tuple[str, str, dict[str, Any]]] = []
    bus.emit("foreign_copier", "nobody listens")  # no receiver: logged, no error
    bus.set_receiver(lambda cause, text, details: got.append((cause, text, details)))
    try:
        bus.emit("foreign_copier", "positions labelled by another copier", {"account": "f1"})
    finally:
        bus.set_receiver(None)
    bus.emit("foreign_copier", "after stop")
    assert got == [("foreign_copier", "positions labelled by another copier", {"account": "f1"})]


async def test_a_failed_account_is_alerted_once_as_failed_or_needing_a_token(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from cmamd.config.models import Config
    from cmamd.control.hub import OperatorHub
    from cmamd.state.store import StateStore

    config = Config.model_validate(
        {
            "api": {"client_id": "id", "client_secret": "s3cret-value"},
            "state_dir": str(tmp_path),
            "accounts": [{"name": "f1", "account_id": 1, "live": False}],
        }
    )
    sessions = {
        "f1": SimpleNamespace(status="ready", error=None),
        "f2": SimpleNamespace(status="starting", error=None),
    }
    with StateStore.open(tmp_path) as store:
        daemon = SimpleNamespace(store=store, config=config, sessions=sessions)
        hub = OperatorHub(daemon, {})  # type: ignore[arg-type]
        sink = FakeSink("ok")
        hub.alerts = AlertDispatcher(AlertsConfig(repeat_after_s=0), sinks=[sink])
        hub.alerts.start()
        hub._check_accounts()
        sessions["f1"].status, sessions["f1"].error = (
            "failed",
            "CH_ACCESS_TOKEN_INVALID: token expired",
        )
        sessions["f2"].status, sessions["f2"].error = "failed", "trader account is archived"
        hub._check_accounts()
        hub._check_accounts()  # still failed: no second alert
        await hub.alerts.stop()
    assert [(a["cause"], a["details"]["account"]) for a in sink.got] == [
        ("account_reauth", "f1"),
        ("account_failed", "f2"),
    ]


def test_the_rate_gate_caps_each_cause_whatever_the_subjects() -> None:
    now = [0.0]
    gate = RateGate(60, lambda: now[0], per_cause=3)
    admitted = [gate.admit("copy_refused", f"f1:p{n}")[0] for n in range(5)]
    assert admitted == [True, True, True, False, False]
    assert gate.admit("equity_stop", "f1") == (True, 0), "other causes are not held back"
    now[0] = 61
    assert gate.admit("copy_refused", "f1:p9") == (True, 2), "the two held back are counted"

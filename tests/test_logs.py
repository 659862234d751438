from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from cmamd import logs

CLIENT_SECRET = "cs-4f9a8b7c6d5e4f3a"
ACCESS_TOKEN = "at_Zx81kLmN0pQr/sTuV+w=="
REFRESH_TOKEN = "rt_7Yh2Gf6Dd4Ss1Aa9"
ROTATED_TOKEN = "rt_NEW_after_rotation_55"


@pytest.fixture(autouse=True)
def isolated_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets an empty secret registry and leaves stdlib/structlog as it found them."""
    monkeypatch.setattr(logs, "_redactor", logs.SecretRedactor())
    root = logging.getLogger()
    old_level = root.level
    chatty = {name: logging.getLogger(name).level for name in ("websockets",)}
    structlog.contextvars.clear_contextvars()
    yield
    for handler in [h for h in root.handlers if h.get_name() == "cmamd"]:
        root.removeHandler(handler)
    root.setLevel(old_level)
    for name, level in chatty.items():
        logging.getLogger(name).setLevel(level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


Configure = Callable[..., None]


@pytest.fixture(params=["direct", "stdlib"])
def configure(request: pytest.FixtureRequest) -> Configure:
    """configure_logging, then either our handler alone on the root logger (the daemon:
    lines rendered and written directly) or with pytest's handlers still there (every
    record through the stdlib, as tests with caplog need)."""

    def configure_and_route(*args: Any, **kwargs: Any) -> None:
        logs.configure_logging(*args, **kwargs)
        root = logging.getLogger()
        if request.param == "direct":
            for handler in [h for h in root.handlers if h.get_name() != "cmamd"]:
                root.removeHandler(handler)
            assert len(root.handlers) == 1
        else:
            assert len(root.handlers) > 1

    return configure_and_route


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Credentials:
    """An object whose repr shows a token, as a careless library class might."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Credentials(token={self.token!r})"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# --- processors as plain functions -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "client_secret",
        "clientSecret",
        "access_token",
        "accessToken",
        "refresh_token",
        "refreshToken",
        "token",
        "secret",
        "new_refresh_token",
        "REFRESH-TOKEN",
        "password",
    ],
)
def test_credential_field_names_are_recognised(name: str) -> None:
    assert logs.is_secret_field(name)


@pytest.mark.parametrize("name", ["event", "account", "token_type", "expires_in", "tokens_left"])
def test_ordinary_field_names_are_not_redacted(name: str) -> None:
    assert not logs.is_secret_field(name)


def test_field_redaction_blanks_credentials_at_any_depth() -> None:
    event = {
        "event": "refreshed",
        "accessToken": "whatever",
        "account": 42,
        "response": {"refresh_token": "abc", "expiresIn": 2628000, "items": [{"secret": 1}]},
        "has_token": True,
        "token": None,
    }
    out = logs.redact_secret_fields(None, "info", event)
    assert out == {
        "event": "refreshed",
        "accessToken": "***",
        "account": 42,
        "response": {"refresh_token": "***", "expiresIn": 2628000, "items": [{"secret": "***"}]},
        # Whether a credential exists is useful and harmless; only values are hidden.
        "has_token": True,
        "token": None,
    }


def test_value_redaction_finds_secrets_everywhere() -> None:
    redactor = logs.SecretRedactor([ACCESS_TOKEN])
    event = {
        "event": f"sending {ACCESS_TOKEN} now",
        "headers": {"Authorization": f"Bearer {ACCESS_TOKEN}", ACCESS_TOKEN: "as a key"},
        "args": (1, [f"x{ACCESS_TOKEN}y"], None, 2.5, False),
        "seen": {ACCESS_TOKEN},
        "creds": Credentials(ACCESS_TOKEN),
        "error": ValueError(f"bad token {ACCESS_TOKEN}"),
        "count": 3,
    }
    out = redactor(None, "info", event)
    assert out == {
        "event": "sending *** now",
        "headers": {"Authorization": "Bearer ***", "***": "as a key"},
        "args": (1, ["x***y"], None, 2.5, False),
        "seen": ["***"],
        "creds": "Credentials(token='***')",
        "error": "ValueError('bad token ***')",
        "count": 3,
    }


def test_objects_without_secrets_are_left_for_the_renderer() -> None:
    redactor = logs.SecretRedactor([ACCESS_TOKEN])
    creds = Credentials("harmless-value")
    assert redactor(None, "info", {"creds": creds})["creds"] is creds


def test_url_encoded_form_of_a_secret_is_redacted_too() -> None:
    redactor = logs.SecretRedactor([ACCESS_TOKEN])
    url = "https://openapi.ctrader.com/apps/token?access_token=at_Zx81kLmN0pQr%2FsTuV%2Bw%3D%3D"
    assert redactor.redact_text(url) == "https://openapi.ctrader.com/apps/token?access_token=***"


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = logs.SecretRedactor(["abcdef", "abcdef-ghijkl"])
    assert redactor.redact_text("abcdef-ghijkl|abcdef") == "***|***"


def test_short_secrets_are_refused() -> None:
    redactor = logs.SecretRedactor()
    assert not redactor.register("12345")
    assert redactor.redact_text("order 12345 filled") == "order 12345 filled"
    assert not logs.register_secret("abc")


def test_without_secrets_the_event_dict_passes_untouched() -> None:
    event = {"event": "x", "n": 1}
    assert logs.SecretRedactor()(None, "info", event) is event


# --- the configured pipeline -------------------------------------------------------------


def test_json_lines_carry_the_required_keys_and_utc_iso_timestamps(configure: Configure) -> None:
    out = io.StringIO()
    configure(level="info", fmt="json", stream=out)
    structlog.contextvars.bind_contextvars(account=123, rule="mirror")
    logs.get_logger("cmamd.test").info("copied", volume=100_000)
    logging.getLogger("some.library").warning("library says %s", "hi")

    first, second = json_lines(out.getvalue())
    assert first == {
        "timestamp": first["timestamp"],
        "level": "info",
        "logger": "cmamd.test",
        "event": "copied",
        "volume": 100_000,
        "account": 123,
        "rule": "mirror",
    }
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert second["logger"] == "some.library"
    assert second["level"] == "warning"
    assert second["event"] == "library says hi"
    assert second["account"] == 123


def test_default_stream_is_stdout(monkeypatch: pytest.MonkeyPatch, configure: Configure) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure(fmt="auto")
    logs.get_logger("cmamd.test").info("to journald")
    assert json_lines(out.getvalue())[0]["event"] == "to journald"


def test_auto_format_is_console_on_a_tty(configure: Configure) -> None:
    tty = FakeTTY()
    configure(fmt="auto", stream=tty, secrets=[ACCESS_TOKEN])
    logs.get_logger("cmamd.test").info("hello", token_used=ACCESS_TOKEN, account=7)
    line = tty.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "hello" in line and "account" in line
    assert ACCESS_TOKEN not in line and "***" in line


def test_reconfiguring_changes_level_for_existing_loggers_without_duplicating_lines(
    configure: Configure,
) -> None:
    out = io.StringIO()
    configure(level="warning", fmt="json", stream=out)
    log = logs.get_logger("cmamd.test")
    log.info("hidden")
    log.warning("shown once")
    configure(level="debug", fmt="json", stream=out)  # the SIGHUP path
    log.debug("now visible")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["shown once", "now visible"]


def test_websockets_chatter_is_quiet_unless_debug(configure: Configure) -> None:
    out = io.StringIO()
    configure(level="info", fmt="json", stream=out)
    ws = logging.getLogger("websockets.client")
    ws.info("< PING")
    ws.warning("connection lost")
    logging.getLogger("asyncio").info("asyncio info passes")
    configure(level="debug", fmt="json", stream=out)
    ws.debug("> PONG")
    events = [line["event"] for line in json_lines(out.getvalue())]
    assert events == ["connection lost", "asyncio info passes", "> PONG"]


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_unknown_level_or_format_is_rejected(level: str, fmt: str) -> None:
    with pytest.raises(ValueError):
        logs.configure_logging(level=level, fmt=fmt, stream=io.StringIO())


async def test_context_is_bound_per_task() -> None:
    log = logs.get_logger("cmamd.test")

    async def session(account: int) -> None:
        structlog.contextvars.bind_contextvars(account=account)
        await asyncio.sleep(0)
        log.info("tick")
        await asyncio.sleep(0)
        log.info("tock")

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as captured:
        await asyncio.gather(session(1), session(2))
    seen = sorted((entry["account"], entry["event"]) for entry in captured)
    assert seen == [(1, "tick"), (1, "tock"), (2, "tick"), (2, "tock")]


# --- a whole session, end to end ---------------------------------------------------------


def test_a_whole_session_never_prints_a_secret(configure: Configure) -> None:
    out = io.StringIO()
    configure(level="debug", fmt="json", stream=out, secrets=[CLIENT_SECRET])
    logs.register_secret(ACCESS_TOKEN)
    logs.register_secret(REFRESH_TOKEN)
    log = logs.get_logger("cmamd.connection")
    lib = logging.getLogger("websockets.client")
    structlog.contextvars.bind_contextvars(connection="live", account=9001)

    log.info("application auth", client_id="1234_abc", client_secret=CLIENT_SECRET)
    log.info(f"account auth with {ACCESS_TOKEN}")
    log.bind(session=f"s-{ACCESS_TOKEN}").debug("bound context")
    log.info("token response", response={"accessToken": ACCESS_TOKEN, "data": [REFRESH_TOKEN]})
    log.info(
        "request",
        params=[{"grant": f"refresh_token={REFRESH_TOKEN}"}],
        creds=Credentials(REFRESH_TOKEN),
    )
    lib.debug("> GET /apps/token?client_secret=%s", CLIENT_SECRET)
    try:
        try:
            raise ConnectionError(f"token {ACCESS_TOKEN} refused")
        except ConnectionError as cause:
            raise RuntimeError(f"refresh with {REFRESH_TOKEN} failed") from cause
    except RuntimeError:
        log.exception("refresh failed")
        log.error("again, via exc_info", exc_info=True)
        lib.error("library traceback", exc_info=True)
    # The token rotates: the new one is registered before anything logs it.
    logs.register_secret(ROTATED_TOKEN)
    structlog.contextvars.bind_contextvars(last_token=ROTATED_TOKEN)
    log.warning("rotated", note=f"new token is {ROTATED_TOKEN}")
    configure(level="info", fmt="json", stream=out)  # SIGHUP keeps the registry
    log.info("after reload", value=ROTATED_TOKEN)

    text = out.getvalue()
    lines = json_lines(text)
    expected_events = [
        "application auth",
        "account auth with ***",
        "bound context",
        "token response",
        "request",
        "> GET /apps/token?client_secret=***",
        "refresh failed",
        "again, via exc_info",
        "library traceback",
        "rotated",
        "after reload",
    ]
    assert [line["event"] for line in lines] == expected_events
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= line.keys()
    for secret in (CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, ROTATED_TOKEN):
        assert secret not in text
    assert "at_Zx81kLmN0pQr%2F" not in text
    # The tracebacks made it out, redacted, with both the cause and the error.
    for line in lines[6:9]:
        assert "ConnectionError: token *** refused" in line["exception"]
        assert "RuntimeError: refresh with *** failed" in line["exception"]
    assert lines[0]["client_secret"] == "***" and lines[0]["client_id"] == "1234_abc"
    assert lines[5]["logger"] == "websockets.client"
    assert lines[9]["last_token"] == "***"


# --- the cost of a line: what the fast paths must not lose ----------------------------------


class Probe:
    """A field value that counts how often anything renders it."""

    def __init__(self) -> None:
        self.renders = 0

    def __repr__(self) -> str:
        self.renders += 1
        return "Probe()"


def test_a_filtered_line_renders_nothing(configure: Configure) -> None:
    out = io.StringIO()
    configure(level="info", fmt="json", stream=out)
    log = logs.get_logger("cmamd.test")
    probe = Probe()
    log.debug("hidden", probe=probe)
    assert out.getvalue() == "" and probe.renders == 0
    log.info("shown", probe=probe)
    assert json_lines(out.getvalue())[0]["probe"] == "Probe()" and probe.renders >= 1


def test_cached_loggers_follow_a_reconfiguration(
    monkeypatch: pytest.MonkeyPatch, configure: Configure
) -> None:
    monkeypatch.setattr(logs, "_cache_loggers", False)
    logs.enable_logger_cache()
    first, second = io.StringIO(), FakeTTY()
    configure(level="warning", fmt="json", stream=first)
    log = logs.get_logger("cmamd.test")
    log.warning("cached now")
    assert log.bind.__name__ == "finalized_bind"  # structlog cached this proxy's logger
    # SIGHUP: another level, format and stream; the cached logger must use all three.
    configure(level="debug", fmt="console", stream=second, secrets=[ACCESS_TOKEN])
    log.debug("after reload", token_seen=f"x{ACCESS_TOKEN}")
    assert [line["event"] for line in json_lines(first.getvalue())] == ["cached now"]
    console = second.getvalue()
    with pytest.raises(json.JSONDecodeError):  # the new renderer, not the cached chain's
        json.loads(console)
    assert "after reload" in console and ACCESS_TOKEN not in console and "***" in console


@pytest.mark.parametrize(
    "secret", ['quote"and\\slash-secret', "pässwörd-with-umlauts", "tab\there-secret"]
)
def test_a_secret_is_found_in_its_json_escaped_form(secret: str, configure: Configure) -> None:
    out = io.StringIO()
    configure(level="info", fmt="json", stream=out, secrets=[secret])
    logs.get_logger("cmamd.test").info("sent", body=f"<{secret}>", nested={"x": [secret]})
    text = out.getvalue()
    assert secret not in text and json.dumps(secret)[1:-1] not in text
    (line,) = json_lines(text)
    assert line["body"] == "<***>" and line["nested"] == {"x": ["***"]}


def test_a_broken_output_does_not_break_the_caller(
    capsys: pytest.CaptureFixture[str], configure: Configure
) -> None:
    out = io.StringIO()
    configure(level="info", fmt="json", stream=out)
    out.close()
    logs.get_logger("cmamd.test").info("into the void")  # must not raise
    assert "Logging error" in capsys.readouterr().err


def test_capture_logs_sees_every_level_after_a_configuration(configure: Configure) -> None:
    configure(level="error", fmt="json", stream=io.StringIO())
    log = logs.get_logger("cmamd.test")
    with capture_logs() as captured:
        log.debug("a debug line")
        log.info("an info line")
    assert [entry["event"] for entry in captured] == ["a debug line", "an info line"]


def test_stdlib_handlers_still_get_our_records(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    logs.configure_logging(level="info", fmt="json", stream=out, secrets=[ACCESS_TOKEN])
    logs.get_logger("cmamd.test").warning("copy skipped", reason="closed", token=ACCESS_TOKEN)
    (record,) = [r for r in caplog.records if r.name == "cmamd.test"]
    assert record.levelno == logging.WARNING
    assert isinstance(record.msg, dict) and record.msg["event"] == "copy skipped"
    (line,) = json_lines(out.getvalue())
    assert line["reason"] == "closed" and line["token"] == "***"

"""`cmamd auth` bad input: one clear sentence naming cause and fix, exit 1, store untouched."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from clocks import ShiftedClock

from cmamd.sim import SimConfig, SimServer
from cmamd.state.shared_tokens import read_view

from .kit import CmamdProcess, Run, browser_grant, onboarding_config


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def sim(redirect_uri: str, clock: ShiftedClock) -> AsyncIterator[SimServer]:
    config = SimConfig.default(redirect_uris=[redirect_uri], grant_ctid="followers")
    async with SimServer(config, clock=clock) as server:
        yield server


def _state(tmp_path: Path) -> object:
    return read_view(tmp_path / "state")


def _refused(run: Run, *phrases: str) -> None:
    assert run.code == 1, run.text
    lines = [line for line in run.err.splitlines() if line.startswith("cmamd auth: ")]
    assert lines[-1] == "cmamd auth: nothing was stored", run.err
    message = lines[0]
    for phrase in phrases:
        assert phrase in message, message
    assert "Traceback" not in run.text


async def _paste_run(config: Path, text_of: object, *extra: str) -> Run:
    process = await CmamdProcess.start("auth", "--config", str(config), "--no-listen", *extra)
    url = await process.auth_url()
    process.paste(await text_of(url))  # type: ignore[operator]
    return await process.finish()


async def _location(url: str) -> str:
    return await browser_grant(url)


async def _code_only(url: str) -> str:
    return parse_qs(urlsplit(await browser_grant(url)).query)["code"][0]


async def test_wrong_client_secret(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)
    (tmp_path / "client_secret").write_text("not-the-secret")
    run = await _paste_run(config, _location)
    _refused(run, "refused the application", "client secret", "activated")
    assert not (tmp_path / "state").exists()
    assert "not-the-secret" not in run.text


async def test_inactive_application(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)

    async def grant_then_deactivate(url: str) -> str:
        location = await browser_grant(url)
        sim.oauth.settings.active = False
        return location

    run = await _paste_run(config, grant_then_deactivate)
    _refused(run, "refused the application", "day or two")


async def test_code_pasted_twice_leaves_the_store_as_it_was(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)
    codes: list[str] = []

    async def remember(url: str) -> str:
        codes.append(await _code_only(url))
        return codes[0]

    first = await _paste_run(config, remember)
    assert first.code == 0, first.text
    before = _state(tmp_path)

    async def same_code(url: str) -> str:
        return codes[0]

    run = await _paste_run(config, same_code)
    _refused(run, "refused the code", "already used", "only once")
    assert _state(tmp_path) == before


async def test_expired_code(
    sim: SimServer, tmp_path: Path, redirect_uri: str, clock: ShiftedClock
) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)

    async def late(url: str) -> str:
        code = await _code_only(url)
        clock.offset += 61
        return code

    run = await _paste_run(config, late)
    _refused(run, "refused the code", "expired", "about a minute")


@pytest.mark.parametrize(
    ("pasted", "phrase"),
    [
        ("{redirect}?state=abc", "no `code` parameter"),
        ("{redirect}?code=abcdefgh12345&state=wrong", "`state` in the URL does not match"),
        ("{redirect}?error=access_denied&error_description=user+said+no", "user said no"),
        ("this is not it", "neither a URL nor a code"),
    ],
)
async def test_bad_paste(
    sim: SimServer, tmp_path: Path, redirect_uri: str, pasted: str, phrase: str
) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)

    async def paste(url: str) -> str:
        return pasted.format(redirect=redirect_uri)

    run = await _paste_run(config, paste)
    _refused(run, phrase)
    assert not (tmp_path / "state").exists()


async def test_token_endpoint_answering_html(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)
    sim.oauth.settings.html_token_replies = True
    run = await _paste_run(config, _location)
    _refused(run, "answered HTTP 502 with text/html instead of JSON", "api.token_url")


async def test_token_endpoint_timing_out(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri, request_timeout_s=1)
    sim.oauth.settings.hang_token_replies = True
    run = await _paste_run(config, _location)
    _refused(run, "did not answer within 1 s", "api.token_url")


async def test_redirect_uri_not_registered(
    sim: SimServer, tmp_path: Path, redirect_uri: str
) -> None:
    sim.oauth.settings.redirect_uris = ["http://127.0.0.1:1/other"]
    config = onboarding_config(sim, tmp_path, redirect_uri)
    process = await CmamdProcess.start("auth", "--config", str(config), "--wait", "1")
    url = await process.auth_url()
    with pytest.raises(AssertionError, match="400"):
        await browser_grant(url)  # the browser shows the refusal; nothing comes back
    process.close_stdin()
    run = await process.finish()
    _refused(run, "invalid redirect URI", "api.redirect_uri", "registered")


async def test_listener_port_in_use(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    config = onboarding_config(sim, tmp_path, redirect_uri)
    port = urlsplit(redirect_uri).port
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port or 0))
        busy.listen()
        process = await CmamdProcess.start("auth", "--config", str(config))
        process.close_stdin()
        run = await process.finish()
    _refused(run, "already in use", "--no-listen")


async def test_state_dir_unusable(sim: SimServer, tmp_path: Path, redirect_uri: str) -> None:
    (tmp_path / "a-file").write_text("")  # the state_dir below it cannot be created, even by root
    config = onboarding_config(sim, tmp_path, redirect_uri)
    state = str(tmp_path / "a-file" / "state")
    config.write_text(config.read_text().replace(str(tmp_path / "state"), state))
    run = await _paste_run(config, _location)
    _refused(run, "cannot write the state store", "as the user the daemon runs as")

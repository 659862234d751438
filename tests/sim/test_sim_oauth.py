"""The simulator's OAuth stand-in, driven with the standard library (not cmamd's client)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from clocks import ShiftedClock

from cmamd.sim import SimConfig, SimServer

REDIRECT = "http://127.0.0.1:1/callback"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def sim(clock: ShiftedClock) -> AsyncIterator[SimServer]:
    async with SimServer(SimConfig.default(redirect_uris=[REDIRECT]), clock=clock) as server:
        yield server


def _open(url: str) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(_open, url)


async def _grant(sim: SimServer, **params: str) -> str:
    query = {"client_id": sim.config.client_id, "redirect_uri": REDIRECT, "scope": "trading"}
    status, headers, body = await _get(f"{sim.oauth.auth_url}?{urlencode({**query, **params})}")
    assert status == 302, body
    location = urlsplit(headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    found = parse_qs(location.query)
    if "state" in params:
        assert found["state"] == [params["state"]]
    return found["code"][0]


async def _token(sim: SimServer, **params: str) -> dict[str, Any]:
    base = {"client_id": sim.config.client_id, "client_secret": sim.config.client_secret}
    status, headers, body = await _get(f"{sim.oauth.token_url}?{urlencode({**base, **params})}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    reply: dict[str, Any] = json.loads(body)
    return reply


async def _exchange(sim: SimServer, code: str, **extra: str) -> dict[str, Any]:
    params = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    return await _token(sim, **{**params, **extra})


async def test_a_code_buys_one_pair_once(sim: SimServer) -> None:
    before = sim.tokens.by_name("masters").refresh_token
    code = await _grant(sim, state="xyz")
    reply = await _exchange(sim, code)
    assert reply["errorCode"] is None and reply["tokenType"] == "bearer"
    assert reply["expiresIn"] == int(sim.config.token_ttl_s)
    ctid = sim.tokens.by_name("masters")
    assert (reply["accessToken"], reply["refreshToken"]) == (ctid.access_token, ctid.refresh_token)
    assert ctid.refresh_token != before  # a grant rotates the pair
    again = await _exchange(sim, code)
    assert again["errorCode"] == "INVALID_GRANT" and "already used" in again["description"]


async def test_a_code_expires_after_a_minute(sim: SimServer, clock: ShiftedClock) -> None:
    code = await _grant(sim)
    clock.offset = 60
    reply = await _exchange(sim, code)
    assert reply["errorCode"] == "INVALID_GRANT" and "expired" in reply["description"]


async def test_the_redirect_uri_must_match_the_grant(sim: SimServer) -> None:
    code = await _grant(sim)
    reply = await _exchange(sim, code, redirect_uri="http://127.0.0.1:2/other")
    assert reply["errorCode"] == "INVALID_GRANT"


@pytest.mark.parametrize(
    "params",
    [{"client_id": "nope"}, {"redirect_uri": "http://127.0.0.1:2/x"}, {"scope": "all"}],
)
async def test_the_grant_page_refuses_without_redirecting(
    sim: SimServer, params: dict[str, str]
) -> None:
    query = {"client_id": sim.config.client_id, "redirect_uri": REDIRECT, "scope": "trading"}
    status, headers, body = await _get(f"{sim.oauth.auth_url}?{urlencode({**query, **params})}")
    assert status == 400 and "Location" not in headers and body.startswith(b"<html>")


async def test_wrong_secret_and_inactive_application_are_errorcodes_with_http_200(
    sim: SimServer,
) -> None:
    code = await _grant(sim)
    reply = await _exchange(sim, code, client_secret="wrong")
    assert reply["errorCode"] == "ACCESS_DENIED" and "accessToken" not in reply
    sim.oauth.settings.active = False
    reply = await _exchange(sim, code)
    assert reply["errorCode"] == "ACCESS_DENIED"


async def test_refresh_tokens_are_single_use_and_a_reply_can_be_dropped(sim: SimServer) -> None:
    first = sim.tokens.by_name("masters").refresh_token
    reply = await _token(sim, grant_type="refresh_token", refresh_token=first)
    assert reply["errorCode"] is None and reply["refreshToken"] != first
    reused = await _token(sim, grant_type="refresh_token", refresh_token=first)
    assert reused["errorCode"] == "CH_ACCESS_TOKEN_INVALID"
    sim.oauth.settings.drop_refresh_replies = 1
    second = reply["refreshToken"]
    with pytest.raises(Exception):  # noqa: B017 - the connection ends with no reply at all
        await _token(sim, grant_type="refresh_token", refresh_token=second)
    assert sim.tokens.by_name("masters").refresh_token != second  # it was acted on

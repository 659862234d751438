"""The pure parts of onboarding: the authorisation URL, what is pasted, the token reply,
the accounts block and the re-grant warning."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from cmamd.config.models import AccountConfig
from cmamd.onboarding import grant_report, redirect
from cmamd.onboarding.errors import OnboardingError
from cmamd.onboarding.remote import Grant, GrantedAccount
from cmamd.onboarding.token_client import mask, parse_reply

TOKEN_URL = "https://openapi.ctrader.com/apps/token"


def test_authorisation_url_carries_client_redirect_scope_and_state() -> None:
    url = redirect.authorisation_url(
        "https://openapi.ctrader.com/apps/auth",
        "12_ab",
        "http://127.0.0.1:8765/cb",
        "trading",
        "s1",
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "openapi.ctrader.com",
        "/apps/auth",
    )
    assert parse_qs(parts.query) == {
        "client_id": ["12_ab"],
        "redirect_uri": ["http://127.0.0.1:8765/cb"],
        "scope": ["trading"],
        "state": ["s1"],
    }


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1:8765/callback", redirect.ListenAddress("127.0.0.1", 8765, "/callback")),
        ("http://localhost/cb", redirect.ListenAddress("localhost", 80, "/cb")),
        ("https://127.0.0.1:8765/callback", None),  # a listener cannot answer TLS
        ("http://example.com:8765/callback", None),
    ],
)
def test_listener_only_for_plain_loopback_redirects(
    uri: str, expected: redirect.ListenAddress | None
) -> None:
    assert redirect.loopback_listen_address(uri) == expected


def test_pasted_url_query_or_bare_code() -> None:
    url = "http://127.0.0.1:8765/callback?code=abcDEF123456&state=s1"
    assert redirect.code_from_paste(url, "s1") == "abcDEF123456"
    assert redirect.code_from_paste("  code=abcDEF123456&state=s1\n", "s1") == "abcDEF123456"
    assert redirect.code_from_paste("abcDEF123456", "s1") == "abcDEF123456"


@pytest.mark.parametrize(
    ("pasted", "phrase"),
    [
        ("", "nothing was pasted"),
        ("http://127.0.0.1:8765/callback?state=s1", "no `code` parameter"),
        ("http://127.0.0.1:8765/callback?code=abcDEF123456&state=s2", "does not match"),
        ("http://127.0.0.1:8765/callback?code=abcDEF123456", "does not match"),
        ("http://127.0.0.1:8765/callback?code=a%20b%3Cc%3E12345&state=s1", "malformed"),
        ("http://h/cb?error=access_denied", "refused the grant (access_denied)"),
        ("not a code", "neither a URL nor a code"),
    ],
)
def test_bad_pastes_are_named(pasted: str, phrase: str) -> None:
    with pytest.raises(OnboardingError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        redirect.code_from_paste(pasted, "s1")


def _reply(body: object, status: int = 200, content_type: str = "application/json") -> bytes:
    return json.dumps(body).encode() if not isinstance(body, bytes) else body


def test_a_token_reply_becomes_a_pair_whose_repr_hides_the_tokens() -> None:
    body = {
        "accessToken": "A" * 40,
        "refreshToken": "R" * 40,
        "expiresIn": 2628000,
        "tokenType": "bearer",
        "errorCode": None,
        "description": None,
    }
    pair = parse_reply(200, "application/json", _reply(body), TOKEN_URL)
    assert (pair.access_token, pair.refresh_token, pair.expires_in_s) == (
        "A" * 40,
        "R" * 40,
        2628000,
    )
    assert "A" * 40 not in repr(pair) and "R" * 40 not in repr(pair)
    assert mask("A" * 40) == "AAAA…(40 chars)"


@pytest.mark.parametrize(
    ("status", "content_type", "body", "phrase"),
    [
        (
            200,
            "application/json",
            {"errorCode": "ACCESS_DENIED", "description": "x"},
            "refused the application",
        ),
        (
            200,
            "application/json",
            {"errorCode": "INVALID_GRANT", "description": "used"},
            "refused the code",
        ),
        (
            200,
            "application/json",
            {"accessToken": "a", "expiresIn": 5},
            "without a usable token pair",
        ),
        (
            200,
            "application/json",
            {"accessToken": "a", "refreshToken": "r", "expiresIn": "5"},
            "without a usable",
        ),
        (502, "text/html", b"<html>bad gateway</html>", "HTTP 502 with text/html instead of JSON"),
        (200, "application/json", b"{not json", "instead of JSON"),
    ],
)
def test_token_refusals_and_garbage(
    status: int, content_type: str, body: object, phrase: str
) -> None:
    with pytest.raises(OnboardingError, match=phrase):
        parse_reply(status, content_type, _reply(body), TOKEN_URL)


GRANT = Grant(
    "trading",
    [
        GrantedAccount(3202001, False, 7700201, "Demo Markets"),
        GrantedAccount(3202002, False, 7700202, "Suffix Markets"),
        GrantedAccount(3202003, True, 7700203, "IC Markets (EU) Ltd"),
    ],
)


def _configured(name: str, account_id: int) -> AccountConfig:
    return AccountConfig(name=name, account_id=account_id, live=False)


def test_accounts_block_is_valid_yaml_keeping_configured_names() -> None:
    block = grant_report.accounts_block(GRANT, [_configured("main", 3202002)])
    accounts = yaml.safe_load(block)["accounts"]
    assert accounts == [
        {"name": "demo-markets-7700201", "account_id": 3202001, "live": False},
        {"name": "main", "account_id": 3202002, "live": False},
        {"name": "ic-markets-eu-ltd-7700203", "account_id": 3202003, "live": True},
    ]
    for account in accounts:  # every suggested name is a valid config name
        AccountConfig(**account)


def test_regrant_warning_only_for_accounts_of_the_same_ctid() -> None:
    configured = [
        _configured("in", 3202001),
        _configured("cut", 4000001),
        _configured("other", 5000001),
        _configured("new", 6000001),
    ]
    previous = {3202001: "old-pair", 4000001: "old-pair", 5000001: "another-pair"}
    warnings = grant_report.missing_from_grant(GRANT, configured, previous)
    assert len(warnings) == 2
    assert "'cut' (4000001) was granted by this cTrader ID before" in warnings[0]
    assert "'new' (6000001) is configured but not in this grant and has no token" in warnings[1]

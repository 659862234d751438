"""The OAuth authorisation URL and what comes back from it (pure: no I/O).

The redirect comes back either through the local listener (a query string) or pasted by
the user: the whole redirected URL, or just the code from the browser's address bar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from cmamd.config.crosscheck import is_loopback
from cmamd.onboarding.errors import OnboardingError

SCOPES = ("trading", "accounts")
# Codes seen in practice are URL-safe tokens; anything else pasted is not a code.
_CODE = re.compile(r"^[A-Za-z0-9._~\-]{8,2048}$")


def authorisation_url(
    base_url: str, client_id: str, redirect_uri: str, scope: str, state: str
) -> str:
    query = urlencode(
        {"client_id": client_id, "redirect_uri": redirect_uri, "scope": scope, "state": state}
    )
    return f"{base_url}{'&' if '?' in base_url else '?'}{query}"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int
    path: str


def loopback_listen_address(redirect_uri: str) -> ListenAddress | None:
    """Where a local listener can catch the redirect, or None (not a loopback http URI)."""
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or not parts.hostname or not is_loopback(parts.hostname):
        return None
    try:
        port = parts.port or 80
    except ValueError:
        return None
    return ListenAddress(parts.hostname, port, parts.path or "/")


def code_from_query(query: str, expected_state: str) -> str:
    """The code in a redirect's query string, with its ``state`` checked."""
    params = parse_qs(query, keep_blank_values=True)
    error = _first(params, "error")
    if error:
        detail = _first(params, "error_description") or error
        raise OnboardingError(
            f"the authorisation page refused the grant ({detail}): check the client id and "
            "redirect URI of the application, then run `cmamd auth` again"
        )
    code = _first(params, "code")
    if not code:
        raise OnboardingError(
            "the URL has no `code` parameter: paste the whole address the browser shows "
            "after you granted access (or just the code in it)"
        )
    state = _first(params, "state")
    if state != expected_state:
        raise OnboardingError(
            "the `state` in the URL does not match this run of `cmamd auth` (a URL from "
            "another attempt?): open the URL printed above and paste what it returns"
        )
    if not _CODE.match(code):
        raise OnboardingError("the `code` in the URL is malformed: paste the whole address again")
    return code


def code_from_paste(text: str, expected_state: str) -> str:
    """The code from a pasted redirected URL, a pasted query, or a bare code."""
    text = text.strip()
    if not text:
        raise OnboardingError("nothing was pasted: paste the redirected URL or its code")
    if "://" in text or "?" in text or "=" in text:
        query = urlsplit(text).query if "://" in text else text.split("?", 1)[-1]
        return code_from_query(query, expected_state)
    if not _CODE.match(text):
        raise OnboardingError(
            "that is neither a URL nor a code: paste the whole address the browser shows "
            "after you granted access"
        )
    return text  # a bare code carries no state: the user copied it from this run's page


def _first(params: dict[str, list[str]], key: str) -> str:
    values = params.get(key)
    return values[0] if values else ""

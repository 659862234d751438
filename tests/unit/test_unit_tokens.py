"""TokenKeeper against a real StateStore in a tmp dir."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmamd.accounts.timing import PRODUCTION, SessionTiming
from cmamd.accounts.token_keeper import (
    NewTokens,
    TokenError,
    TokenKeeper,
    refresh_margin_ms,
)
from cmamd.state.store import StateStore, StoredTokens

NOW_S = 1_700_000_000.0
NOW_MS = int(NOW_S * 1000)


class Clock:
    def __init__(self) -> None:
        self.now = NOW_S

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state", clock_ms=lambda: NOW_MS) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keeper(store: StateStore, clock: Clock) -> TokenKeeper:
    return TokenKeeper(store, clock)


class Refresher:
    """Hands out numbered pairs; can be held to let concurrent callers pile up."""

    def __init__(self, expires_in_s: int = 2_592_000) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.expires_in_s = expires_in_s
        self.error: Exception | None = None

    async def __call__(self, refresh_token: str) -> NewTokens:
        self.calls.append(refresh_token)
        await self.release.wait()
        if self.error is not None:
            raise self.error
        n = len(self.calls)
        return NewTokens(f"access-{n}", f"refresh-{n}", self.expires_in_s)


def test_seed_stores_the_config_tokens_when_the_store_has_none(
    keeper: TokenKeeper, store: StateStore
) -> None:
    keeper.seed(1, "acc-1", "ref-1")
    assert store.get_tokens(1) == StoredTokens("acc-1", "ref-1", None, NOW_MS)
    assert keeper.current(1).access_token == "acc-1"


def test_seed_never_overwrites_stored_tokens(keeper: TokenKeeper, store: StateStore) -> None:
    # the store holds rotated tokens; the config still holds the first, long dead ones
    store.put_tokens(1, StoredTokens("rotated-acc", "rotated-ref", NOW_MS + 10**9, NOW_MS))
    keeper.seed(1, "config-acc", "config-ref")
    assert store.get_tokens(1) == StoredTokens("rotated-acc", "rotated-ref", NOW_MS + 10**9, NOW_MS)


def test_seed_without_tokens_stores_nothing(keeper: TokenKeeper, store: StateStore) -> None:
    keeper.seed(1, None, None)
    keeper.seed(2, "", "")
    assert store.get_tokens(1) is None and store.get_tokens(2) is None


def test_missing_token_is_a_token_error_naming_the_account(keeper: TokenKeeper) -> None:
    with pytest.raises(TokenError, match="account 4242 has no token"):
        keeper.current(4242)
    with pytest.raises(TokenError, match="4242"):
        keeper.needs_refresh(4242)


def test_needs_refresh_by_expiry_margin(
    keeper: TokenKeeper, store: StateStore, clock: Clock
) -> None:
    store.put_tokens(1, StoredTokens("a", "r", None, NOW_MS))  # expiry unknown
    issued = NOW_MS - 29 * 24 * 3600 * 1000  # 30-day tokens issued 29 days ago
    margin_ms = PRODUCTION.refresh_margin_ms
    store.put_tokens(2, StoredTokens("a", "r2", NOW_MS + margin_ms + 60_000, issued))
    store.put_tokens(3, StoredTokens("a", "r3", NOW_MS + margin_ms - 60_000, issued))
    store.put_tokens(4, StoredTokens("a", "r4", NOW_MS - 1, NOW_MS))  # already expired
    assert [keeper.needs_refresh(i) for i in (1, 2, 3, 4)] == [False, False, True, True]
    clock.now += 120  # two minutes later account 2 is inside the margin as well
    assert keeper.needs_refresh(2)
    assert not keeper.needs_refresh(1)


async def test_refresh_rotates_the_whole_group_in_one_write(
    keeper: TokenKeeper, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = StoredTokens("old-acc", "shared-ref", NOW_MS + 1000, NOW_MS)
    store.put_tokens(1, shared)
    store.put_tokens(2, shared)
    store.put_tokens(3, StoredTokens("other-acc", "other-ref", None, NOW_MS))
    writes: list[dict[int, StoredTokens]] = []
    real_many = store.put_tokens_many

    def counting(tokens: dict[int, StoredTokens]) -> dict[int, StoredTokens]:
        writes.append(dict(tokens))
        return real_many(tokens)

    monkeypatch.setattr(store, "put_tokens_many", counting)
    monkeypatch.setattr(store, "put_tokens", lambda *_a: pytest.fail("one write per group"))
    refresher = Refresher(expires_in_s=3600)

    fresh = await keeper.refresh(2, refresher)

    assert refresher.calls == ["shared-ref"]
    expected = StoredTokens("access-1", "refresh-1", NOW_MS + 3_600_000, NOW_MS)
    assert fresh == expected
    assert len(writes) == 1 and sorted(writes[0]) == [1, 2]
    assert store.get_tokens(1) == store.get_tokens(2) == expected
    assert store.get_tokens(3) == StoredTokens("other-acc", "other-ref", None, NOW_MS)
    # a fresh one-hour pair is due after three quarters of its life, not on arrival
    assert keeper.seconds_until_refresh(1) == 45 * 60


async def test_concurrent_refreshes_of_one_group_call_the_refresher_once(
    keeper: TokenKeeper, store: StateStore
) -> None:
    shared = StoredTokens("old-acc", "shared-ref", NOW_MS, NOW_MS)
    for account in (1, 2, 3):
        store.put_tokens(account, shared)
    refresher = Refresher()
    refresher.release.clear()
    tasks = [asyncio.ensure_future(keeper.refresh(a, refresher)) for a in (1, 2, 3, 1)]
    for _ in range(5):
        await asyncio.sleep(0)
    refresher.release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert refresher.calls == ["shared-ref"], "a single-use refresh token is spent once"
    assert {(r.access_token, r.refresh_token) for r in results} == {("access-1", "refresh-1")}
    assert {store.get_tokens(a).refresh_token for a in (1, 2, 3)} == {"refresh-1"}  # type: ignore[union-attr]


async def test_separate_groups_refresh_independently(
    keeper: TokenKeeper, store: StateStore
) -> None:
    store.put_tokens(1, StoredTokens("a1", "ref-A", NOW_MS, NOW_MS))
    store.put_tokens(2, StoredTokens("a2", "ref-B", NOW_MS, NOW_MS))
    refresher = Refresher()
    await asyncio.gather(keeper.refresh(1, refresher), keeper.refresh(2, refresher))
    assert sorted(refresher.calls) == ["ref-A", "ref-B"]
    assert store.get_tokens(1) != store.get_tokens(2)


async def test_a_refused_refresh_changes_nothing_and_can_be_tried_again(
    keeper: TokenKeeper, store: StateStore
) -> None:
    before = StoredTokens("acc", "ref", NOW_MS, NOW_MS)
    store.put_tokens(1, before)
    refresher = Refresher()
    refresher.error = RuntimeError("refused")
    with pytest.raises(RuntimeError, match="refused"):
        await keeper.refresh(1, refresher)
    assert store.get_tokens(1) == before
    refresher.error = None
    fresh = await asyncio.wait_for(keeper.refresh(1, refresher), 1)  # the lock was released
    assert fresh.refresh_token == "refresh-2"
    assert refresher.calls == ["ref", "ref"]


async def test_refresh_without_a_refresh_token_is_a_token_error(
    keeper: TokenKeeper, store: StateStore
) -> None:
    store.put_tokens(7, StoredTokens("acc", "", None, NOW_MS))
    refresher = Refresher()
    with pytest.raises(TokenError, match="account 7 has no refresh token"):
        await keeper.refresh(7, refresher)
    assert refresher.calls == []


async def test_refresh_of_an_unknown_account_is_a_token_error(keeper: TokenKeeper) -> None:
    with pytest.raises(TokenError, match="account 8"):
        await keeper.refresh(8, Refresher())


def test_a_lifetime_under_a_day_is_rotated_after_three_quarters_of_it(
    keeper: TokenKeeper, store: StateStore, clock: Clock
) -> None:
    hour_ms = 3600 * 1000
    store.put_tokens(1, StoredTokens("a", "r", NOW_MS + hour_ms, NOW_MS))  # lives one hour
    store.put_tokens(2, StoredTokens("a", "r2", NOW_MS + 30 * 24 * hour_ms, NOW_MS))  # 30 days
    assert keeper.seconds_until_refresh(1) == 45 * 60, "a quarter of an hour before expiry"
    assert keeper.seconds_until_refresh(2) == 29 * 24 * 3600, "a day before expiry"
    assert not keeper.needs_refresh(1)
    clock.now += 45 * 60
    assert keeper.needs_refresh(1) and not keeper.needs_refresh(2)
    assert refresh_margin_ms(StoredTokens("a", "r", 0, NOW_MS)) == 0  # a bootstrap refresh token


def test_a_keeper_rotates_by_the_margins_it_is_given(store: StateStore, clock: Clock) -> None:
    hour_ms = 3600 * 1000
    early = SessionTiming(refresh_margin_ms=hour_ms - 1000, refresh_margin_fraction=1.0)
    keeper = TokenKeeper(store, clock, early)
    store.put_tokens(1, StoredTokens("a", "r", NOW_MS + hour_ms, NOW_MS))  # lives one hour
    assert keeper.seconds_until_refresh(1) == 1.0, "due a second in, as the timing says"
    assert refresh_margin_ms(StoredTokens("a", "r", NOW_MS + hour_ms, NOW_MS), early) == (
        hour_ms - 1000
    )

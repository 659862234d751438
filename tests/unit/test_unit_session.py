"""AccountSession over a fake connection: start-up, events, recovery, tokens, queries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

from cmamd.accounts import catalogue as catalogue_module
from cmamd.accounts.model import AccountKind, OrderKind, Side
from cmamd.accounts.session import AccountChange, AccountSession
from cmamd.accounts.status import SessionStatus
from cmamd.accounts.timing import SessionTiming
from cmamd.accounts.token_keeper import TokenKeeper
from cmamd.connection.errors import RequestNotSent, SendTimeout
from cmamd.protocol.errors import OpenApiError, OutcomeUnknown
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2
from cmamd.state.shared_tokens import read_view
from cmamd.state.store import StateStore, StoredTokens

from .session_fakes import (
    ACCOUNT,
    OTHER_ACCOUNT,
    FakeConnection,
    closing_deal,
    execution,
    order,
    position,
    trader,
)


async def until(check: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    await wait_until(check, timeout, 0.005, what=what)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state") as opened:
        yield opened


@pytest.fixture
def keeper(store: StateStore) -> TokenKeeper:
    tokens = TokenKeeper(store)
    tokens.seed(ACCOUNT, "access-0", "refresh-0")
    return tokens


@pytest.fixture
def conn() -> FakeConnection:
    return FakeConnection()


@pytest.fixture
def changes() -> list[AccountChange]:
    return []


@pytest.fixture
async def make_session(
    conn: FakeConnection, keeper: TokenKeeper, changes: list[AccountChange]
) -> AsyncIterator[Callable[..., AccountSession]]:
    made: list[AccountSession] = []

    def make(**kw: Any) -> AccountSession:
        session = AccountSession(
            name="acc",
            account_id=ACCOUNT,
            is_live=False,
            connection=conn,  # type: ignore[arg-type]
            tokens=keeper,
            on_change=changes.append,
            **kw,
        )
        made.append(session)
        return session

    yield make
    for session in made:
        await session.stop()


@pytest.fixture
async def ready(
    make_session: Callable[..., AccountSession], changes: list[AccountChange]
) -> AccountSession:
    session = make_session()
    await session.start()
    assert session.status == SessionStatus.READY
    changes.clear()
    return session


def names(conn: FakeConnection) -> list[str]:
    return [type(m).__name__.removeprefix("ProtoOA") for m in conn.sent]


# start-up ------------------------------------------------------------------------------
async def test_start_loads_trader_assets_symbols_and_reconciles_then_is_ready(
    conn: FakeConnection,
    make_session: Callable[..., AccountSession],
    changes: list[AccountChange],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(catalogue_module, "SYMBOL_DETAIL_BATCH", 4)
    conn.positions = [position(11), position(12, symbol_id=2, volume=300_000)]
    conn.orders = [
        order(21),
        order(22, kind=model_pb2.MARKET),  # a market order in flight: not a resting order
        order(23, kind=model_pb2.STOP, stopPrice=1.05, closingOrder=True),  # a stop-loss order
        order(24, status=model_pb2.ORDER_STATUS_FILLED),
    ]
    session = make_session()
    assert session.status == SessionStatus.NEW and not session.ready.is_set()

    await session.start()

    assert (session.status, session.error, session.ready.is_set()) == ("ready", None, True)
    assert names(conn) == [
        "AccountAuthReq",
        "TraderReq",
        "AssetListReq",
        "SymbolsListReq",
        "SymbolByIdReq",
        "SymbolByIdReq",
        "ReconcileReq",
    ]
    auth = conn.sent[0]
    assert isinstance(auth, pb.ProtoOAAccountAuthReq)
    assert (auth.ctidTraderAccountId, auth.accessToken) == (ACCOUNT, "access-0")
    batches = [list(m.symbolId) for m in conn.sent if isinstance(m, pb.ProtoOASymbolByIdReq)]
    assert batches == [[1, 2, 3, 4], [5, 6]]

    state = session.state
    assert state.trader is not None
    assert (state.trader.balance, state.trader.deposit_asset) == (Decimal("10000.00"), "USD")
    assert (state.trader.kind, state.trader.broker, state.trader.is_live) == (
        AccountKind.HEDGED,
        "Fake Broker",
        False,
    )
    assert sorted(state.symbols_by_name) == [
        "EURCHF",
        "EURGBP",
        "EURUSD",
        "GBPJPY",
        "GBPUSD",
        "USDJPY",
    ]
    assert session.symbol("USDJPY") is state.symbols_by_id[2]
    assert (state.symbols_by_id[2].digits, state.symbols_by_id[2].lot_size) == (3, 10_000_000)
    assert session.symbol("XAUUSD") is None
    assert sorted(state.positions) == [11, 12]
    assert state.positions[12].volume == 300_000 and state.positions[12].side is Side.BUY
    assert sorted(state.orders) == [21]
    assert state.orders[21].kind is OrderKind.LIMIT and state.orders[21].limit_price == 1.07

    (change,) = changes
    assert change.resync and change.account_id == ACCOUNT
    assert change.keys == {"p11", "p12", "o21"}
    assert len(conn.listeners) == 1 and len(conn.hooks) == 1


async def test_a_resync_reports_items_that_disappeared(
    conn: FakeConnection, ready: AccountSession, changes: list[AccountChange]
) -> None:
    conn.positions = [position(31)]
    await ready.resync()
    conn.positions = []
    conn.orders = [order(41)]
    await ready.resync()
    assert [c.keys for c in changes] == [{"p31"}, {"p31", "o41"}]
    assert all(c.resync for c in changes)
    assert ready.state.positions == {} and list(ready.state.orders) == [41]


async def test_stop_logs_out_and_unsubscribes(conn: FakeConnection, ready: AccountSession) -> None:
    await ready.stop(logout=True)
    assert names(conn)[-1] == "AccountLogoutReq"
    assert (ready.status, ready.ready.is_set()) == ("stopped", False)
    assert conn.listeners == [] and conn.hooks == []


# events --------------------------------------------------------------------------------
async def test_market_open_partial_close_and_close(
    conn: FakeConnection, ready: AccountSession, changes: list[AccountChange]
) -> None:
    filled_order = order(
        50, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED, positionId=7
    )
    conn.feed(
        execution(
            model_pb2.ORDER_ACCEPTED,
            order=order(50, kind=model_pb2.MARKET),
            position=position(7, status=model_pb2.POSITION_STATUS_CREATED),
        )
    )
    assert changes == [], "an accepted market order changes nothing yet"
    conn.feed(
        execution(
            model_pb2.ORDER_FILLED, order=filled_order, position=position(7, volume=1_000_000)
        )
    )
    assert [c.keys for c in changes] == [{"p7"}]
    assert changes[0].origins == {} and not changes[0].resync
    assert ready.state.positions[7].volume == 1_000_000

    # partial close: the position lives on with less volume; the deal carries the balance
    conn.feed(
        execution(
            model_pb2.ORDER_FILLED,
            position=position(7, volume=400_000),
            order=order(51, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
            deal=closing_deal(7, balance=1_012_345),
        )
    )
    assert changes[-1].keys == {"p7"}
    assert ready.state.positions[7].volume == 400_000
    assert ready.state.trader is not None and ready.state.trader.balance == Decimal("10123.45")

    # close: gone; the deal's own money digits win
    conn.feed(
        execution(
            model_pb2.ORDER_FILLED,
            position=position(7, volume=0, status=model_pb2.POSITION_STATUS_CLOSED),
            order=order(52, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
            deal=closing_deal(7, balance=10_200_000, money_digits=3),
        )
    )
    assert changes[-1].keys == {"p7"}
    assert 7 not in ready.state.positions
    assert ready.state.trader.balance == Decimal("10200.000")
    assert len(changes) == 3


async def test_pending_order_accepted_amended_and_cancelled(
    conn: FakeConnection, ready: AccountSession, changes: list[AccountChange]
) -> None:
    conn.feed(execution(model_pb2.ORDER_ACCEPTED, order=order(60, limitPrice=1.07)))
    assert [c.keys for c in changes] == [{"o60"}]
    assert ready.state.orders[60].limit_price == 1.07
    conn.feed(execution(model_pb2.ORDER_REPLACED, order=order(60, limitPrice=1.06)))
    assert ready.state.orders[60].limit_price == 1.06
    conn.feed(
        execution(
            model_pb2.ORDER_CANCELLED, order=order(60, status=model_pb2.ORDER_STATUS_CANCELLED)
        )
    )
    assert [c.keys for c in changes] == [{"o60"}, {"o60"}, {"o60"}]
    assert ready.state.orders == {}
    # an event for an order that is neither resting nor known changes nothing
    conn.feed(
        execution(
            model_pb2.ORDER_CANCELLED, order=order(61, status=model_pb2.ORDER_STATUS_CANCELLED)
        )
    )
    assert len(changes) == 3


async def test_a_filled_pending_order_reports_the_position_it_opened(
    conn: FakeConnection, ready: AccountSession, changes: list[AccountChange]
) -> None:
    conn.feed(execution(model_pb2.ORDER_ACCEPTED, order=order(70)))
    conn.feed(
        execution(
            model_pb2.ORDER_FILLED,
            order=order(70, status=model_pb2.ORDER_STATUS_FILLED, positionId=71),
            position=position(71),
        )
    )
    fill = changes[-1]
    assert fill.keys == {"o70", "p71"}
    assert fill.origins == {"p71": "o70"}
    assert ready.state.orders == {} and list(ready.state.positions) == [71]


async def test_a_market_fill_has_no_origin(
    conn: FakeConnection, ready: AccountSession, changes: list[AccountChange]
) -> None:
    conn.feed(
        execution(
            model_pb2.ORDER_FILLED,
            order=order(80, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
            position=position(81),
        )
    )
    assert changes[-1].origins == {}


async def test_events_of_other_accounts_are_ignored(
    conn: FakeConnection, ready: AccountSession, changes: list[AccountChange]
) -> None:
    conn.feed(execution(model_pb2.ORDER_FILLED, account=OTHER_ACCOUNT, position=position(90)))
    conn.feed(pb.ProtoOATraderUpdatedEvent(ctidTraderAccountId=OTHER_ACCOUNT, trader=trader(1)))
    conn.feed(pb.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=OTHER_ACCOUNT))
    conn.feed(
        pb.ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=[OTHER_ACCOUNT], reason="x")
    )
    await settle()
    assert changes == []
    assert ready.state.positions == {}
    assert ready.state.trader is not None and ready.state.trader.balance == Decimal("10000.00")
    assert (ready.status, conn.count("ProtoOAAccountAuthReq")) == ("ready", 1)


async def test_trader_updated_event_replaces_the_trader(
    conn: FakeConnection, ready: AccountSession
) -> None:
    updated = trader(balance=987_654, money_digits=2)
    updated.accessRights = model_pb2.CLOSE_ONLY
    conn.feed(pb.ProtoOATraderUpdatedEvent(ctidTraderAccountId=ACCOUNT, trader=updated))
    info = ready.state.trader
    assert info is not None
    assert (info.balance, info.deposit_asset, info.trading_allowed) == (
        Decimal("9876.54"),
        "USD",
        False,
    )


# recovery ------------------------------------------------------------------------------
async def test_disconnect_and_token_invalidated_start_one_recovery(
    conn: FakeConnection, ready: AccountSession, changes: list[AccountChange]
) -> None:
    gate = conn.hold("ProtoOAAccountAuthReq")
    conn.feed(pb.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=ACCOUNT))
    await settle()
    assert (ready.status, ready.ready.is_set()) == ("reauthorising", False)
    conn.feed(
        pb.ProtoOAAccountsTokenInvalidatedEvent(
            ctidTraderAccountIds=[OTHER_ACCOUNT, ACCOUNT], reason="rotated"
        )
    )
    conn.feed(pb.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=ACCOUNT))
    await settle()
    assert conn.count("ProtoOAAccountAuthReq") == 2, "one recovery for several events"

    gate.set()
    await until(ready.ready.is_set, "ready again")
    await settle()
    assert ready.status == SessionStatus.READY
    assert conn.count("ProtoOAAccountAuthReq") == 2
    assert conn.count("ProtoOAReconcileReq") == 2
    assert conn.count("ProtoOATraderReq") == 1, "the catalogue is not loaded twice"
    assert [c.resync for c in changes] == [True]

    # once over, a new cause starts a new recovery
    conn.feed(pb.ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=[ACCOUNT]))
    await until(lambda: conn.count("ProtoOAReconcileReq") == 3, "second recovery")
    await until(ready.ready.is_set, "ready again")
    assert conn.count("ProtoOAAccountAuthReq") == 3


async def test_reconnect_hook_reauthorises_and_reconciles(
    conn: FakeConnection, ready: AccountSession
) -> None:
    conn.fail("ProtoOAAccountAuthReq", OpenApiError("ALREADY_LOGGED_IN"))  # counts as done
    (hook,) = conn.hooks
    await hook(conn)
    # not ready until reconciled: nothing may be copied from a stale view
    assert (ready.status, ready.ready.is_set()) == ("reauthorising", False)
    await until(lambda: conn.count("ProtoOAReconcileReq") == 2, "reconcile after reconnect")
    await until(ready.ready.is_set, "ready")
    await settle()
    assert ready.status == SessionStatus.READY
    assert conn.count("ProtoOAAccountAuthReq") == 2, "no recovery: the hook's auth sufficed"


async def test_a_refused_reauthorisation_after_reconnect_falls_back_to_recovery(
    conn: FakeConnection, ready: AccountSession, store: StateStore
) -> None:
    conn.valid_access = "rotated-elsewhere"  # our access token died while the link was down
    await conn.hooks[0](conn)
    await until(ready.ready.is_set, "ready after the recovery refreshed the token")
    assert names(conn)[-4:] == [
        "AccountAuthReq",
        "RefreshTokenReq",
        "AccountAuthReq",
        "ReconcileReq",
    ]
    stored = store.get_tokens(ACCOUNT)
    assert stored is not None and stored.access_token == "access-1"


async def test_an_expired_access_token_is_refreshed_and_persisted(
    conn: FakeConnection, make_session: Callable[..., AccountSession], store: StateStore
) -> None:
    conn.valid_access = "not-what-we-hold"  # the stored access token is refused
    session = make_session()
    await session.start()
    assert session.status == SessionStatus.READY
    assert names(conn)[:3] == ["AccountAuthReq", "RefreshTokenReq", "AccountAuthReq"]
    refresh, auth = conn.sent[1], conn.sent[2]
    assert isinstance(refresh, pb.ProtoOARefreshTokenReq)
    assert isinstance(auth, pb.ProtoOAAccountAuthReq)
    assert refresh.refreshToken == "refresh-0"
    assert auth.accessToken == "access-1"
    stored = store.get_tokens(ACCOUNT)
    assert stored is not None and (stored.access_token, stored.refresh_token) == (
        "access-1",
        "refresh-1",
    )
    assert stored.expires_at_ms is not None


async def test_a_refused_token_leaves_the_account_needing_reauthorisation(
    conn: FakeConnection, make_session: Callable[..., AccountSession]
) -> None:
    conn.valid_access = conn.valid_refresh = "revoked"
    session = make_session()
    await session.start()
    await settle()
    assert (session.status, session.ready.is_set()) == ("needs re-authorisation", False)
    assert session.needs_reauth is not None
    assert session.error is not None and "CH_ACCESS_TOKEN_INVALID" in session.error
    assert names(conn) == ["AccountAuthReq", "RefreshTokenReq"], "no retry of a refusal"


async def test_a_token_refused_during_recovery_needs_reauthorisation(
    conn: FakeConnection, ready: AccountSession
) -> None:
    conn.valid_access = conn.valid_refresh = "revoked"
    conn.feed(
        pb.ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=[ACCOUNT], reason="revoked")
    )
    await until(lambda: ready.status == SessionStatus.NEEDS_REAUTH, "needs re-authorisation")
    assert ready.error is not None and ready.error.startswith("cannot authorise")
    assert "CH_ACCESS_TOKEN_INVALID" in ready.error
    assert not ready.ready.is_set()


async def test_an_account_without_a_token_needs_authorisation_naming_it(
    conn: FakeConnection, store: StateStore, changes: list[AccountChange]
) -> None:
    session = AccountSession(
        name="acc",
        account_id=777,
        is_live=False,
        connection=conn,  # type: ignore[arg-type]
        tokens=TokenKeeper(store),
        on_change=changes.append,
    )
    await session.start()
    assert session.status == SessionStatus.NEEDS_REAUTH
    assert session.error is not None and "777" in session.error
    assert conn.sent == []
    await session.stop()


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),
        SendTimeout("send budget exhausted"),
        RequestNotSent("link down"),
        OutcomeUnknown("no answer"),
        OpenApiError("SERVER_IS_UNDER_MAINTENANCE"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_transient_error_during_start_is_retried(
    conn: FakeConnection, make_session: Callable[..., AccountSession], error: Exception
) -> None:
    conn.fail("ProtoOATraderReq", error)
    session = make_session()
    await session.start()  # returns: the retry runs in the background
    assert session.status != SessionStatus.FAILED
    await until(session.ready.is_set, "ready after retry")
    assert (session.status, session.error) == (SessionStatus.READY, None)
    assert conn.count("ProtoOATraderReq") == 2
    assert conn.count("ProtoOAReconcileReq") == 1


async def test_equity_is_loaded_at_start_and_kept_current(
    conn: FakeConnection, make_session: Callable[..., AccountSession]
) -> None:
    conn.unrealized = [1500, -500]
    session = make_session(pnl_interval_s=0.01)
    await session.start()
    assert names(conn)[-2:] == ["GetPositionUnrealizedPnLReq", "ReconcileReq"]
    assert session.state.unrealized_pnl == Decimal("10.00")
    assert session.state.equity == Decimal("10010.00")
    conn.unrealized = [-2500]
    await until(lambda: session.state.equity == Decimal("9975.00"), "equity refreshed")


async def test_equity_is_kept_current_after_a_start_that_needed_a_retry(
    conn: FakeConnection, make_session: Callable[..., AccountSession]
) -> None:
    # equity feeds equity stops and risk sizing: a slow first start must not freeze it
    conn.fail("ProtoOAReconcileReq", TimeoutError())
    conn.unrealized = [1000]
    session = make_session(pnl_interval_s=0.01)
    await session.start()
    await until(session.ready.is_set, "ready after retry")
    assert session.state.equity == Decimal("10010.00")
    conn.unrealized = [-3000]
    await until(
        lambda: session.state.equity == Decimal("9970.00"), "equity refreshed after a retried start"
    )


# queries -------------------------------------------------------------------------------
async def test_wait_for_order_sees_an_event_that_came_before_the_wait(
    conn: FakeConnection, ready: AccountSession
) -> None:
    conn.feed(execution(model_pb2.ORDER_ACCEPTED, order=order(100)))
    wanted = {model_pb2.ORDER_ACCEPTED, model_pb2.ORDER_REJECTED}
    assert (
        await asyncio.wait_for(ready.wait_for_order(100, wanted, timeout=5), 1)
        == model_pb2.ORDER_ACCEPTED
    )


async def test_wait_for_order_resolves_on_a_later_matching_event(
    conn: FakeConnection, ready: AccountSession
) -> None:
    conn.feed(execution(model_pb2.ORDER_ACCEPTED, order=order(101, kind=model_pb2.MARKET)))
    waiter = asyncio.ensure_future(ready.wait_for_order(101, {model_pb2.ORDER_FILLED}, timeout=5))
    await settle()
    assert not waiter.done(), "ACCEPTED is not what it waits for"
    conn.feed(
        execution(
            model_pb2.ORDER_FILLED,
            order=order(102, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
        )
    )
    await settle()
    assert not waiter.done(), "another order's fill"
    conn.feed(
        execution(
            model_pb2.ORDER_FILLED,
            order=order(101, kind=model_pb2.MARKET, status=model_pb2.ORDER_STATUS_FILLED),
            position=position(103),
        )
    )
    assert await asyncio.wait_for(waiter, 1) == model_pb2.ORDER_FILLED


async def test_wait_for_order_times_out(ready: AccountSession) -> None:
    with pytest.raises(TimeoutError):
        await ready.wait_for_order(104, {model_pb2.ORDER_FILLED}, timeout=0.05)


async def test_quote_to_deposit(conn: FakeConnection, ready: AccountSession) -> None:
    by_name = ready.state.symbols_by_name
    # quoted in the deposit currency: 1, no quote needed
    assert ready.quote_to_deposit(by_name["EURUSD"]) == Decimal(1)
    assert ready.quote_to_deposit(by_name["GBPUSD"]) == Decimal(1)
    # JPY: through USDJPY, once a quote of it is known
    assert ready.quote_to_deposit(by_name["GBPJPY"]) is None
    conn.feed(
        pb.ProtoOASpotEvent(ctidTraderAccountId=ACCOUNT, symbolId=2, bid=15_000_000, ask=15_002_000)
    )
    rate = ready.quote_to_deposit(by_name["GBPJPY"])
    assert rate is not None and abs(rate - 1 / Decimal("150.01")) < Decimal("1e-12")
    assert ready.quote_to_deposit(by_name["USDJPY"]) == rate
    # GBP: GBPUSD directly (not inverted)
    conn.feed(
        pb.ProtoOASpotEvent(ctidTraderAccountId=ACCOUNT, symbolId=5, bid=125_000, ask=125_010)
    )
    gbp = ready.quote_to_deposit(by_name["EURGBP"])
    assert gbp is not None and abs(gbp - Decimal("1.25005")) < Decimal("1e-12")
    # a bid-only spot keeps the last ask
    conn.feed(pb.ProtoOASpotEvent(ctidTraderAccountId=ACCOUNT, symbolId=5, bid=126_000))
    assert ready.quotes[5].ask == 1.2501 and ready.quotes[5].bid == 1.26
    # CHF: no CHF/USD pair at this broker
    assert ready.quote_to_deposit(by_name["EURCHF"]) is None
    # another account's quotes are not ours
    conn.feed(pb.ProtoOASpotEvent(ctidTraderAccountId=OTHER_ACCOUNT, symbolId=9, bid=1, ask=1))
    assert 9 not in ready.quotes


async def test_quote_to_deposit_before_start_is_unknown(
    make_session: Callable[..., AccountSession],
) -> None:
    from cmamd.accounts.model import SymbolSpec

    session = make_session()
    assert session.quote_to_deposit(SymbolSpec(1, "EURUSD", 5, 4, 10_000_000, 1, 1, 10)) is None


def _due_for_rotation(store: StateStore) -> None:
    now_ms = int(time.time() * 1000)
    # a 30-day pair stored 30 days ago, one second from expiry: inside the rotation margin
    store.put_tokens(
        ACCOUNT, StoredTokens("access-0", "refresh-0", now_ms + 1000, now_ms - 30 * 86_400_000)
    )


async def test_a_lost_refresh_reply_is_retried_with_the_held_refresh_token(
    conn: FakeConnection, make_session: Callable[..., AccountSession], store: StateStore
) -> None:
    _due_for_rotation(store)
    conn.fail("ProtoOARefreshTokenReq", OutcomeUnknown("no answer"))  # the server never acted
    session = make_session()
    await session.start()
    assert session.status == SessionStatus.READY and session.needs_reauth is None
    assert names(conn)[:3] == ["RefreshTokenReq", "RefreshTokenReq", "AccountAuthReq"]
    stored = store.get_tokens(ACCOUNT)
    assert stored is not None and stored.refresh_token == "refresh-1"


async def test_a_dead_refresh_token_keeps_copying_on_the_held_access_token(
    conn: FakeConnection,
    make_session: Callable[..., AccountSession],
    store: StateStore,
    tmp_path: Path,
) -> None:
    _due_for_rotation(store)
    conn.valid_refresh = "rotated-by-a-lost-reply"
    session = make_session()
    await session.start()
    assert session.status == SessionStatus.READY, session.error
    assert session.needs_reauth is not None and "refresh token refused" in session.needs_reauth
    assert read_view(tmp_path / "state").needs_reauth.keys() == {ACCOUNT}
    assert names(conn)[:2] == ["RefreshTokenReq", "AccountAuthReq"]


async def test_an_account_needing_reauthorisation_comes_back_with_a_new_pair_only(
    conn: FakeConnection,
    make_session: Callable[..., AccountSession],
    store: StateStore,
) -> None:
    conn.valid_access = conn.valid_refresh = "revoked"
    session = make_session(timing=SessionTiming(reauth_watch_s=0.01))
    await session.start()
    assert (session.status, session.ready.is_set()) == (SessionStatus.NEEDS_REAUTH, False)
    sent = len(conn.sent)
    await asyncio.sleep(0.1)  # the same refused pair in the store: nothing is tried again
    assert len(conn.sent) == sent
    # a new pair that is refused too: tried once, then waited on again, not retried in a loop
    store.put_tokens(ACCOUNT, StoredTokens("access-wrong", "refresh-wrong", None, 0))
    await until(lambda: len(conn.sent) > sent, "the new pair tried")
    await until(lambda: session.status == SessionStatus.NEEDS_REAUTH, "refused again")
    sent = len(conn.sent)
    await asyncio.sleep(0.1)
    assert len(conn.sent) == sent
    conn.valid_access, conn.valid_refresh = "access-auth", "refresh-auth"
    store.put_tokens(ACCOUNT, StoredTokens("access-auth", "refresh-auth", None, 0))  # cmamd auth
    await until(session.ready.is_set, "ready with the new pair")
    assert session.needs_reauth is None and session.status == SessionStatus.READY


@pytest.mark.parametrize("code", ["OA_AUTH_TOKEN_EXPIRED", "CH_ACCESS_TOKEN_INVALID"])
async def test_a_refused_access_token_and_a_dead_refresh_token_need_reauthorisation(
    conn: FakeConnection,
    make_session: Callable[..., AccountSession],
    tmp_path: Path,
    code: str,
) -> None:
    conn.fail("ProtoOAAccountAuthReq", OpenApiError(code, "refused"))
    conn.valid_refresh = "rotated-elsewhere"
    session = make_session()
    await session.start()
    assert session.status == SessionStatus.NEEDS_REAUTH and not session.ready.is_set()
    assert session.needs_reauth is not None and "CH_ACCESS_TOKEN_INVALID" in session.needs_reauth
    assert read_view(tmp_path / "state").needs_reauth.keys() == {ACCOUNT}

"""Answers to each request type, after the session gates (docs/protocol.md §3).

A handler never sends: it fills an ``Exchange`` with (connection, message) pairs in order,
and the server delivers them, giving the requester's first message the clientMsgId.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import Message

from cmamd.protocol.proto import common_pb2, messages_pb2, model_pb2
from cmamd.sim.broker import AccountEvent, Broker
from cmamd.sim.config import SimConfig
from cmamd.sim.faults import Faults
from cmamd.sim.late_reject import accepted_then_rejected
from cmamd.sim.market import Market
from cmamd.sim.protos import spot_event
from cmamd.sim.session import Session
from cmamd.sim.token_store import TokenRefused, TokenStore
from cmamd.sim.validation import Rejected, RequestError

m = messages_pb2


class Outbox:
    """Messages to connections, in the order they must go out."""

    def __init__(self) -> None:
        self.out: list[tuple[Session, Message]] = []

    def to(self, session: Session, message: Message) -> None:
        self.out.append((session, message))


class Exchange(Outbox):
    """Everything one request causes: messages to connections, and maybe closing the requester."""

    def __init__(self, requester: Session) -> None:
        super().__init__()
        self.requester = requester
        self.close: tuple[int, str] | None = None

    def reply(self, message: Message) -> None:
        self.out.append((self.requester, message))


def oa_error(code: str, description: str, account_id: int | None = None) -> m.ProtoOAErrorRes:
    error = m.ProtoOAErrorRes(errorCode=code, description=description)
    if account_id is not None:
        error.ctidTraderAccountId = account_id
    return error


def common_error(code: str, description: str) -> common_pb2.ProtoErrorRes:
    return common_pb2.ProtoErrorRes(errorCode=code, description=description)


def _account_field(message: Message) -> int | None:
    if "ctidTraderAccountId" not in message.DESCRIPTOR.fields_by_name:
        return None
    value: int = message.ctidTraderAccountId  # type: ignore[attr-defined]
    return value


class Handlers:
    def __init__(
        self,
        config: SimConfig,
        market: Market,
        broker: Broker,
        tokens: TokenStore,
        sessions: Mapping[int, Session],
        faults: Faults,
    ) -> None:
        self._config = config
        self._market = market
        self._broker = broker
        self._tokens = tokens
        self._sessions = sessions
        self._faults = faults
        self._table: dict[type[Message], Callable[[Exchange, Any], None]] = {
            m.ProtoOAAccountAuthReq: self._account_auth,
            m.ProtoOAVersionReq: self._version,
            m.ProtoOAGetAccountListByAccessTokenReq: self._account_list,
            m.ProtoOARefreshTokenReq: self._refresh_token,
            m.ProtoOAAccountLogoutReq: self._logout,
            m.ProtoOATraderReq: self._trader,
            m.ProtoOAAssetListReq: lambda x, r: x.reply(
                self._broker.asset_list(r.ctidTraderAccountId)
            ),
            m.ProtoOASymbolsListReq: lambda x, r: x.reply(
                self._broker.symbols_list(r.ctidTraderAccountId)
            ),
            m.ProtoOASymbolByIdReq: lambda x, r: x.reply(
                self._broker.symbols_by_id(r.ctidTraderAccountId, r.symbolId)
            ),
            m.ProtoOAReconcileReq: lambda x, r: x.reply(
                self._broker.reconcile(r.ctidTraderAccountId)
            ),
            m.ProtoOAGetPositionUnrealizedPnLReq: lambda x, r: x.reply(
                self._broker.unrealized_pnl_res(r.ctidTraderAccountId)
            ),
            m.ProtoOADealListReq: self._deal_list,
            m.ProtoOADealListByPositionIdReq: self._deal_list_by_position,
            m.ProtoOAOrderListReq: self._order_list,
            m.ProtoOASubscribeSpotsReq: self._subscribe_spots,
            m.ProtoOAUnsubscribeSpotsReq: self._unsubscribe_spots,
            m.ProtoOANewOrderReq: self._trade(self._broker.new_order),
            m.ProtoOACancelOrderReq: self._trade(self._broker.cancel_order),
            m.ProtoOAAmendOrderReq: self._trade(self._broker.amend_order),
            m.ProtoOAAmendPositionSLTPReq: self._trade(self._broker.amend_position_sltp),
            m.ProtoOAClosePositionReq: self._trade(self._broker.close_position),
        }

    def handle(self, session: Session, request: Message) -> Exchange:
        exchange = Exchange(session)
        if isinstance(request, m.ProtoOAApplicationAuthReq):
            self._application_auth(exchange, request)
            return exchange
        handler = self._table.get(type(request))
        if handler is None:
            name = type(request).__name__
            exchange.reply(
                common_error("UNSUPPORTED_MESSAGE", f"{name} is not a supported request")
            )
            return exchange
        if not session.app_authenticated:
            exchange.reply(oa_error("CH_CLIENT_NOT_AUTHENTICATED", "Client is not authorized"))
            return exchange
        account_id = _account_field(request)
        if (
            account_id is not None
            and not isinstance(request, m.ProtoOAAccountAuthReq)
            and not session.is_authorised(account_id)
        ):
            exchange.reply(
                oa_error("ACCOUNT_NOT_AUTHORIZED", "Trading account is not authorized", account_id)
            )
            return exchange
        try:
            handler(exchange, request)
        except RequestError as error:
            exchange.reply(oa_error(error.code, error.description, account_id))
        except Rejected as rejection:
            if account_id is None:  # an order error names its account; without one: an error
                exchange.reply(oa_error(rejection.code, rejection.description))
            else:
                exchange.reply(rejection.to_proto(account_id))
        return exchange

    def fan_out(self, outbox: Outbox, events: list[AccountEvent]) -> None:
        """Each event to every connection where its account is authorised."""
        for event in events:
            for session in self._sessions.values():
                if session.is_authorised(event.account_id):
                    outbox.to(session, event.message)

    # --- session ----------------------------------------------------------------------

    def _application_auth(self, exchange: Exchange, request: m.ProtoOAApplicationAuthReq) -> None:
        session = exchange.requester
        if session.app_authenticated:
            exchange.reply(
                oa_error("CH_CLIENT_ALREADY_AUTHENTICATED", "Client is already authorized")
            )
            return
        if (request.clientId, request.clientSecret) != (
            self._config.client_id,
            self._config.client_secret,
        ):
            exchange.reply(
                oa_error("CH_CLIENT_AUTH_FAILURE", "clientId or clientSecret is incorrect")
            )
            exchange.close = (1000, "CH_CLIENT_AUTH_FAILURE")
            return
        authenticated = sum(
            1 for s in self._sessions.values() if s.app_authenticated and not s.closing
        )
        if authenticated >= self._config.max_connections:
            exchange.reply(
                oa_error("CONNECTIONS_LIMIT_EXCEEDED", "Too many connections of this application")
            )
            exchange.close = (1000, "CONNECTIONS_LIMIT_EXCEEDED")
            return
        session.app_authenticated = True
        exchange.reply(m.ProtoOAApplicationAuthRes())

    def _version(self, exchange: Exchange, request: m.ProtoOAVersionReq) -> None:
        exchange.reply(m.ProtoOAVersionRes(version=self._config.version))

    def _account_auth(self, exchange: Exchange, request: m.ProtoOAAccountAuthReq) -> None:
        account_id = request.ctidTraderAccountId
        if not self._broker.has_account(account_id):
            raise RequestError("CH_CTID_TRADER_ACCOUNT_NOT_FOUND", "Trading account not found")
        try:
            self._tokens.authorise(request.accessToken, account_id)
        except TokenRefused as error:
            raise RequestError(error.code, error.description) from None
        if self._broker.trader(account_id).is_live != (self._config.environment == "live"):
            raise RequestError(
                "CANT_ROUTE_REQUEST",
                f"account belongs to the other environment than {self._config.environment}",
            )
        if exchange.requester.is_authorised(account_id):
            raise RequestError("ALREADY_LOGGED_IN", "Trading account is already authorized")
        exchange.requester.authorise(account_id)
        exchange.reply(m.ProtoOAAccountAuthRes(ctidTraderAccountId=account_id))

    def _account_list(
        self, exchange: Exchange, request: m.ProtoOAGetAccountListByAccessTokenReq
    ) -> None:
        try:
            ctid = self._tokens.owner_of_access(request.accessToken)
        except TokenRefused as error:
            raise RequestError(error.code, error.description) from None
        accounts = []
        for account_id in sorted(ctid.account_ids):
            trader = self._broker.trader(account_id)
            accounts.append(
                model_pb2.ProtoOACtidTraderAccount(
                    ctidTraderAccountId=account_id,
                    isLive=trader.is_live,
                    traderLogin=self._broker.trader_proto(account_id).traderLogin,
                    brokerTitleShort=trader.broker,
                )
            )
        exchange.reply(
            m.ProtoOAGetAccountListByAccessTokenRes(
                accessToken=request.accessToken,
                permissionScope=(
                    model_pb2.SCOPE_VIEW if ctid.scope == "accounts" else model_pb2.SCOPE_TRADE
                ),
                ctidTraderAccount=accounts,
            )
        )

    def _refresh_token(self, exchange: Exchange, request: m.ProtoOARefreshTokenReq) -> None:
        try:
            ctid = self._tokens.refresh(request.refreshToken)
        except TokenRefused as error:
            raise RequestError(error.code, error.description) from None
        access_token = ctid.access_token
        if access_token is None:  # refresh() just issued one; a store bug must not reply ""
            raise RequestError("CH_ACCESS_TOKEN_INVALID", "no access token after the refresh")
        exchange.reply(
            m.ProtoOARefreshTokenRes(
                accessToken=access_token,
                tokenType="bearer",
                expiresIn=int(self._tokens.ttl_s),
                refreshToken=ctid.refresh_token,
            )
        )
        self.invalidate(exchange, ctid.account_ids, "Access token was refreshed")

    def invalidate(self, outbox: Outbox, account_ids: frozenset[int], reason: str) -> None:
        """AccountsTokenInvalidatedEvent wherever those accounts are authorised; drop them there."""
        for session in self._sessions.values():
            dropped = sorted(a for a in account_ids if session.is_authorised(a))
            if not dropped:
                continue
            for account_id in dropped:
                session.deauthorise(account_id)
            outbox.to(
                session,
                m.ProtoOAAccountsTokenInvalidatedEvent(ctidTraderAccountIds=dropped, reason=reason),
            )

    def _logout(self, exchange: Exchange, request: m.ProtoOAAccountLogoutReq) -> None:
        account_id = request.ctidTraderAccountId
        exchange.reply(m.ProtoOAAccountLogoutRes(ctidTraderAccountId=account_id))
        exchange.requester.deauthorise(account_id)
        exchange.reply(m.ProtoOAAccountDisconnectEvent(ctidTraderAccountId=account_id))

    # --- account data -----------------------------------------------------------------

    def _trader(self, exchange: Exchange, request: m.ProtoOATraderReq) -> None:
        account_id = request.ctidTraderAccountId
        trader = self._broker.trader_proto(account_id)
        exchange.reply(m.ProtoOATraderRes(ctidTraderAccountId=account_id, trader=trader))

    def _deal_list(self, exchange: Exchange, request: m.ProtoOADealListReq) -> None:
        deals, more = self._broker.deal_list(
            request.ctidTraderAccountId,
            request.fromTimestamp if request.HasField("fromTimestamp") else None,
            request.toTimestamp if request.HasField("toTimestamp") else None,
            request.maxRows if request.HasField("maxRows") else None,
        )
        exchange.reply(
            m.ProtoOADealListRes(
                ctidTraderAccountId=request.ctidTraderAccountId, deal=deals, hasMore=more
            )
        )

    def _deal_list_by_position(
        self, exchange: Exchange, request: m.ProtoOADealListByPositionIdReq
    ) -> None:
        deals, more = self._broker.deal_list(
            request.ctidTraderAccountId,
            request.fromTimestamp if request.HasField("fromTimestamp") else None,
            request.toTimestamp if request.HasField("toTimestamp") else None,
            None,
            position_id=request.positionId,
        )
        exchange.reply(
            m.ProtoOADealListByPositionIdRes(
                ctidTraderAccountId=request.ctidTraderAccountId, deal=deals, hasMore=more
            )
        )

    def _order_list(self, exchange: Exchange, request: m.ProtoOAOrderListReq) -> None:
        orders = self._broker.order_list(
            request.ctidTraderAccountId,
            request.fromTimestamp if request.HasField("fromTimestamp") else None,
            request.toTimestamp if request.HasField("toTimestamp") else None,
        )
        exchange.reply(
            m.ProtoOAOrderListRes(
                ctidTraderAccountId=request.ctidTraderAccountId, order=orders, hasMore=False
            )
        )

    def _subscribe_spots(self, exchange: Exchange, request: m.ProtoOASubscribeSpotsReq) -> None:
        account_id = request.ctidTraderAccountId
        broker = self._broker.trader(account_id).broker
        subscribed = exchange.requester.spots.setdefault(account_id, {})
        symbol_ids = list(dict.fromkeys(request.symbolId))
        if not symbol_ids:
            raise RequestError("INVALID_REQUEST", "no symbolId given")
        for symbol_id in symbol_ids:
            if self._market.symbol(broker, symbol_id) is None:
                raise RequestError("SYMBOL_NOT_FOUND", f"symbol {symbol_id} not found")
            if symbol_id in subscribed:
                raise RequestError(
                    "ALREADY_SUBSCRIBED", f"already subscribed to spots of {symbol_id}"
                )
        exchange.reply(m.ProtoOASubscribeSpotsRes(ctidTraderAccountId=account_id))
        for symbol_id in symbol_ids:
            subscribed[symbol_id] = request.subscribeToSpotTimestamp
            quote = self._market.quote(broker, symbol_id)
            timestamp = self._broker.now_ms() if request.subscribeToSpotTimestamp else None
            exchange.reply(spot_event(account_id, symbol_id, quote.bid, quote.ask, timestamp))

    def _unsubscribe_spots(self, exchange: Exchange, request: m.ProtoOAUnsubscribeSpotsReq) -> None:
        account_id = request.ctidTraderAccountId
        subscribed = exchange.requester.spots.get(account_id, {})
        for symbol_id in request.symbolId:
            if symbol_id not in subscribed:
                raise RequestError(
                    "NOT_SUBSCRIBED_TO_SPOTS", f"not subscribed to spots of {symbol_id}"
                )
        for symbol_id in request.symbolId:
            subscribed.pop(symbol_id, None)
        exchange.reply(m.ProtoOAUnsubscribeSpotsRes(ctidTraderAccountId=account_id))

    # --- trading ----------------------------------------------------------------------

    def _trade(
        self, operation: Callable[[Any], list[AccountEvent]]
    ) -> Callable[[Exchange, Any], None]:
        def handle(exchange: Exchange, request: Any) -> None:
            if isinstance(request, m.ProtoOANewOrderReq):
                code = self._faults.take_reject(request.ctidTraderAccountId)
                if code is not None:
                    raise Rejected(code, "rejected by fault injection")
                late = self._faults.take_late_reject(request.ctidTraderAccountId)
                if late is not None:
                    self.fan_out(exchange, accepted_then_rejected(request, late))
                    return
            self.fan_out(exchange, operation(request))

        return handle

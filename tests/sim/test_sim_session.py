"""Session flow over real sockets: application auth, account auth, tokens, gates
(docs/protocol.md §3)."""

from __future__ import annotations

from cmamd.protocol.proto import common_pb2, messages_pb2, model_pb2
from cmamd.sim import SimConfig, SimServer

from .simkit import Connect, access_token, account_id, authorised_client

m = messages_pb2


async def test_anything_before_application_auth_is_refused(
    server: SimServer, open_client: Connect
) -> None:
    client = await open_client()
    reply = await client.request(m.ProtoOAVersionReq(), "v-1")
    assert isinstance(reply.message, m.ProtoOAErrorRes)
    assert reply.message.errorCode == "CH_CLIENT_NOT_AUTHENTICATED"
    assert reply.client_msg_id == "v-1"
    # The connection survives: authenticating now works.
    await client.app_auth(server.config)
    version = await client.request(m.ProtoOAVersionReq())
    assert isinstance(version.message, m.ProtoOAVersionRes)


async def test_wrong_credentials_are_refused_then_the_server_closes(
    server: SimServer, open_client: Connect
) -> None:
    client = await open_client()
    reply = await client.request(
        m.ProtoOAApplicationAuthReq(clientId=server.config.client_id, clientSecret="nope")
    )
    assert isinstance(reply.message, m.ProtoOAErrorRes)
    assert reply.message.errorCode == "CH_CLIENT_AUTH_FAILURE"
    assert await client.wait_closed() is not None


async def test_second_application_auth_is_refused(server: SimServer, open_client: Connect) -> None:
    client = await open_client()
    await client.app_auth(server.config)
    reply = await client.request(
        m.ProtoOAApplicationAuthReq(
            clientId=server.config.client_id, clientSecret=server.config.client_secret
        )
    )
    assert isinstance(reply.message, m.ProtoOAErrorRes)
    assert reply.message.errorCode == "CH_CLIENT_ALREADY_AUTHENTICATED"


async def test_account_list_of_a_token_shows_its_ctid_accounts(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server)
    token = access_token(server, "follower-hedged")
    reply = await client.request(m.ProtoOAGetAccountListByAccessTokenReq(accessToken=token))
    assert isinstance(reply.message, m.ProtoOAGetAccountListByAccessTokenRes)
    listed = {a.ctidTraderAccountId: a for a in reply.message.ctidTraderAccount}
    followers = {
        account_id(server.config, n)
        for n in ("follower-hedged", "follower-suffix", "follower-netted")
    }
    assert set(listed) == followers
    assert reply.message.permissionScope == model_pb2.SCOPE_TRADE
    suffix = listed[account_id(server.config, "follower-suffix")]
    assert suffix.brokerTitleShort == "Suffix Markets"
    assert suffix.traderLogin == server.config.account("follower-suffix").trader_login
    assert not suffix.isLive


async def test_several_accounts_on_one_connection_and_re_auth_is_already_logged_in(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server, "master", "follower-hedged")
    master = account_id(server.config, "master")
    reply = await client.account_auth(master, access_token(server, "master"))
    assert isinstance(reply.message, m.ProtoOAErrorRes)
    assert reply.message.errorCode == "ALREADY_LOGGED_IN"
    assert reply.message.description == "Trading account is already authorized"
    assert reply.message.ctidTraderAccountId == master
    assert server.connections[0].authorised_accounts == {
        master,
        account_id(server.config, "follower-hedged"),
    }


async def test_account_auth_refuses_bad_tokens_and_unknown_accounts(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server)
    master = account_id(server.config, "master")
    wrong = await client.account_auth(master, "not-a-token")
    other_ctid = await client.account_auth(master, access_token(server, "follower-hedged"))
    unknown = await client.account_auth(999_999, access_token(server, "master"))
    codes = [r.message.errorCode for r in (wrong, other_ctid, unknown)]  # type: ignore[attr-defined]
    assert codes == [
        "CH_ACCESS_TOKEN_INVALID",
        "CH_ACCESS_TOKEN_INVALID",
        "CH_CTID_TRADER_ACCOUNT_NOT_FOUND",
    ]
    assert server.connections[0].authorised_accounts == set()


async def test_account_scoped_request_needs_that_account_authorised_here(
    server: SimServer, open_client: Connect
) -> None:
    other = await authorised_client(open_client, server, "follower-hedged")
    client = await authorised_client(open_client, server, "master")
    follower = account_id(server.config, "follower-hedged")
    reply = await client.request(m.ProtoOATraderReq(ctidTraderAccountId=follower))
    assert isinstance(reply.message, m.ProtoOAErrorRes)
    assert reply.message.errorCode == "ACCOUNT_NOT_AUTHORIZED"
    assert reply.message.ctidTraderAccountId == follower
    ok = await other.request(m.ProtoOATraderReq(ctidTraderAccountId=follower))
    assert isinstance(ok.message, m.ProtoOATraderRes)


async def test_live_account_cannot_be_used_on_the_demo_server(open_client: Connect) -> None:
    data = SimConfig.default().model_dump()
    data["ctids"][0]["accounts"][0]["is_live"] = True
    config = SimConfig.model_validate(data)
    async with SimServer(config) as live_on_demo:
        client = await authorised_client(open_client, live_on_demo)
        master = config.account("master").account_id
        reply = await client.account_auth(master, access_token(live_on_demo, "master"))
        assert isinstance(reply.message, m.ProtoOAErrorRes)
        assert reply.message.errorCode == "CANT_ROUTE_REQUEST"


async def test_refresh_rotates_the_pair_and_invalidates_the_old_one(
    server: SimServer, open_client: Connect
) -> None:
    masters = server.tokens.ctid_of(account_id(server.config, "master"))
    old_access, old_refresh = masters.access_token, masters.refresh_token
    assert old_access is not None
    watcher = await authorised_client(open_client, server, "master", "follower-hedged")
    client = await authorised_client(open_client, server)

    reply = await client.request(m.ProtoOARefreshTokenReq(refreshToken=old_refresh), "r-1")
    assert isinstance(reply.message, m.ProtoOARefreshTokenRes)
    assert reply.client_msg_id == "r-1"
    new_access, new_refresh = reply.message.accessToken, reply.message.refreshToken
    assert {new_access, new_refresh}.isdisjoint({old_access, old_refresh})
    assert reply.message.expiresIn == int(server.config.token_ttl_s)
    assert server.describe()["accounts"][0]["access_token"] == new_access

    # The connection where a masters account was authorised learns it is dropped.
    event = await watcher.recv()
    assert isinstance(event.message, m.ProtoOAAccountsTokenInvalidatedEvent)
    assert list(event.message.ctidTraderAccountIds) == [account_id(server.config, "master")]
    assert event.client_msg_id is None
    assert watcher_accounts(server, 1) == {account_id(server.config, "follower-hedged")}

    master = account_id(server.config, "master")
    stale = await watcher.account_auth(master, old_access)
    assert stale.message.errorCode == "CH_ACCESS_TOKEN_INVALID"  # type: ignore[attr-defined]
    fresh = await watcher.account_auth(master, new_access)
    assert isinstance(fresh.message, m.ProtoOAAccountAuthRes)

    reused = await client.request(m.ProtoOARefreshTokenReq(refreshToken=old_refresh))
    assert isinstance(reused.message, m.ProtoOAErrorRes)
    assert reused.message.errorCode == "CH_ACCESS_TOKEN_INVALID"


def watcher_accounts(server: SimServer, conn_id: int) -> set[int]:
    return next(c for c in server.connections if c.conn_id == conn_id).authorised_accounts


async def test_expired_access_token_is_refused(open_client: Connect) -> None:
    now = [1_700_000_000.0]
    config = SimConfig.default(token_ttl_s=60)
    async with SimServer(config, clock=lambda: now[0]) as sim:
        client = await authorised_client(open_client, sim)
        token = access_token(sim, "master")
        now[0] += 61
        reply = await client.account_auth(config.account("master").account_id, token)
        assert reply.message.errorCode == "OA_AUTH_TOKEN_EXPIRED"  # type: ignore[attr-defined]
        listed = await client.request(m.ProtoOAGetAccountListByAccessTokenReq(accessToken=token))
        assert listed.message.errorCode == "OA_AUTH_TOKEN_EXPIRED"  # type: ignore[attr-defined]


async def test_logout_answers_then_disconnects_the_account(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server, "master")
    master = account_id(server.config, "master")
    reply = await client.request(m.ProtoOAAccountLogoutReq(ctidTraderAccountId=master), "lo")
    assert isinstance(reply.message, m.ProtoOAAccountLogoutRes)
    assert reply.client_msg_id == "lo"
    event = await client.recv()
    assert isinstance(event.message, m.ProtoOAAccountDisconnectEvent)
    assert event.client_msg_id is None
    after = await client.request(m.ProtoOATraderReq(ctidTraderAccountId=master))
    assert after.message.errorCode == "ACCOUNT_NOT_AUTHORIZED"  # type: ignore[attr-defined]


async def test_unknown_payload_type_and_garbage_frames(
    server: SimServer, open_client: Connect
) -> None:
    client = await authorised_client(open_client, server)
    unknown = common_pb2.ProtoMessage(payloadType=2118, clientMsgId="u-1").SerializeToString()
    await client.connection.send(unknown)
    reply = await client.recv()
    assert isinstance(reply.message, common_pb2.ProtoErrorRes)
    assert reply.message.errorCode == "UNSUPPORTED_MESSAGE"
    assert reply.client_msg_id == "u-1"

    await client.connection.send(b"\xff\xff\xff")
    garbage = await client.recv()
    assert garbage.message.errorCode == "INVALID_REQUEST"  # type: ignore[attr-defined]

    # A known request lacking a required field is invalid, not unsupported.
    lacking = common_pb2.ProtoMessage(payloadType=2121, clientMsgId="t-1").SerializeToString()
    await client.connection.send(lacking)
    invalid = await client.recv()
    assert invalid.message.errorCode == "INVALID_REQUEST"  # type: ignore[attr-defined]
    assert invalid.client_msg_id == "t-1"

    # A response type sent by a client is not a request.
    await client.send(m.ProtoOAVersionRes(version="1"), "x")
    not_request = await client.recv()
    assert not_request.message.errorCode == "UNSUPPORTED_MESSAGE"  # type: ignore[attr-defined]
    assert [r.payload_type for r in server.record] == [2100, 2118, 2121, 2105]

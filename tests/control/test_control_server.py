"""The control socket itself: file mode, peer credentials (a real peer and a fake one of
another uid, since tests cannot change uid), stale sockets, one answer per line."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmamd.control.client import EXIT_NO_PERMISSION, EXIT_NOT_RUNNING, ClientError, ControlClient
from cmamd.control.peer import Peer, Policy, peer_of
from cmamd.control.protocol import ControlError, ErrorCode, Request
from cmamd.control.server import ControlServer, SocketInUse


@pytest.fixture
def path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cmamd-", dir="/tmp") as name:
        yield Path(name) / "run" / "control.sock"


async def echo(request: Request, peer: Peer) -> Any:
    if request.action == "retry":
        raise ControlError(ErrorCode.NOT_READY, "account x is not ready: failed")
    return {"action": request.action, "args": request.args, "uid": peer.uid}


def own_policy() -> Policy:
    return Policy(daemon_uid=os.getuid())


async def call(path: Path, action: str, args: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(ControlClient(path, timeout_s=5).call, action, args)


async def test_the_socket_is_0660_and_the_daemons_own_user_is_served(path: Path) -> None:
    server = ControlServer(path, own_policy(), echo)
    await server.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        reply = await call(path, "status")
        assert reply.ok and reply.result == {"action": "status", "args": {}, "uid": os.getuid()}
        refused = await call(path, "retry", {"account": "x"})
        assert (refused.ok, refused.code) == (False, "not_ready")
    finally:
        await server.stop()
    assert not path.exists(), "the socket file goes with the server"


async def test_a_peer_of_another_uid_is_refused(path: Path) -> None:
    seen: list[Peer] = []

    def stranger(sock: socket.socket) -> Peer:
        real = peer_of(sock)  # the kernel's answer is read, then replaced by another uid
        seen.append(real)
        return Peer(real.pid, uid=real.uid + 4242, gid=real.gid + 4242)

    handled: list[Request] = []

    async def handler(request: Request, peer: Peer) -> Any:
        handled.append(request)
        return {}

    journaled: list[tuple[int, str, str]] = []
    server = ControlServer(
        path,
        own_policy(),
        handler,
        peer_reader=stranger,
        journal=lambda peer, action, args, result, message: journaled.append(
            (peer.uid, action, result)
        ),
    )
    await server.start()
    try:
        reply = await call(path, "flatten", {"all": True})
    finally:
        await server.stop()
    assert (reply.ok, reply.code) == (False, "permission_denied")
    assert journaled == [(os.getuid() + 4242, "flatten", "permission_denied")]
    assert "uid" in reply.message
    assert handled == [], "nothing reaches the actions"
    assert seen and seen[0].uid == os.getuid() and seen[0].pid == os.getpid()


async def test_a_member_of_the_control_group_is_served(path: Path) -> None:
    def member(sock: socket.socket) -> Peer:
        real = peer_of(sock)
        return Peer(real.pid, uid=real.uid + 4242, gid=7, groups=frozenset({555}))

    server = ControlServer(path, Policy(os.getuid(), group_gid=555), echo, peer_reader=member)
    await server.start()
    try:
        assert (await call(path, "status")).ok
    finally:
        await server.stop()


async def test_a_stale_socket_is_replaced_and_a_live_one_is_not_taken(path: Path) -> None:
    path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a killed daemon's leftover
    first = ControlServer(path, own_policy(), echo)
    await first.start()
    try:
        with pytest.raises(SocketInUse, match="another daemon"):
            await ControlServer(path, own_policy(), echo).start()
        assert (await call(path, "status")).ok, "the first server keeps its socket"
    finally:
        await first.stop()


async def test_client_errors_name_the_problem(path: Path) -> None:
    with pytest.raises(ClientError, match="not running") as caught:
        await call(path, "status")
    assert caught.value.exit_code == EXIT_NOT_RUNNING
    path.parent.mkdir(parents=True)
    path.parent.chmod(0o000)
    try:
        if os.access(path.parent, os.X_OK):
            pytest.skip("running as root: a mode cannot deny access")
        with pytest.raises(ClientError, match="permission denied") as caught:
            await call(path, "status")
        assert caught.value.exit_code == EXIT_NO_PERMISSION
    finally:
        path.parent.chmod(0o700)


async def test_several_requests_on_one_connection_are_answered_in_order(path: Path) -> None:
    server = ControlServer(path, own_policy(), echo)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(
            b'{"v":1,"id":1,"action":"status"}\nnot json\n{"v":1,"id":3,"action":"mode"}\n'
        )
        await writer.drain()
        lines = [await reader.readline() for _ in range(3)]
        writer.close()
    finally:
        await server.stop()
    assert [b'"id":1' in lines[0], b"bad_request" in lines[1], b'"id":3' in lines[2]] == [
        True,
        True,
        True,
    ]


async def test_an_oversized_line_is_refused_and_the_connection_closed(path: Path) -> None:
    server = ControlServer(path, own_policy(), echo)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"v":1,"action":"status","args":{"x":"' + b"a" * 70_000 + b'"}}\n')
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), 5)
        assert b"bad_request" in answer and b"too long" in answer
        assert await asyncio.wait_for(reader.read(), 5) == b"", "then the daemon hangs up"
        writer.close()
    finally:
        await server.stop()


async def test_ctl_exits_77_when_the_daemon_refuses_the_peer(path: Path) -> None:
    import io

    from cmamd.cli import build_parser
    from cmamd.control import command

    def stranger(sock: socket.socket) -> Peer:
        real = peer_of(sock)
        return Peer(real.pid, uid=real.uid + 4242, gid=real.gid + 4242)

    server = ControlServer(path, own_policy(), echo, peer_reader=stranger)
    await server.start()
    try:
        args = build_parser("ctl").parse_args(["ctl", "--socket", str(path), "status"])
        err = io.StringIO()
        code = await asyncio.to_thread(command.run, args, {}, io.StringIO(), io.StringIO(), err)
    finally:
        await server.stop()
    assert code == EXIT_NO_PERMISSION
    assert "[permission_denied]" in err.getvalue()

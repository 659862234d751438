"""The control socket: a unix stream server speaking ``protocol`` to allowed peers.

The socket file is made mode 0660 (group: the YAML's ``control.group`` when the daemon
may hand it over), a stale file from a killed daemon is replaced, and a live one (another
daemon answering) is left alone: starting fails instead of stealing it. Every request is
logged with the peer's uid and pid, the action and its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cmamd.control.peer import Peer, Policy, peer_of
from cmamd.control.protocol import (
    MAX_LINE,
    ControlError,
    ErrorCode,
    Request,
    decode_request,
    encode_error,
    encode_result,
)
from cmamd.logs import get_logger

log = get_logger("cmamd.control")

SOCKET_MODE = 0o660
Handler = Callable[[Request, Peer], Awaitable[Any]]
Journal = Callable[[Peer, str, Any, str, str], None]  # peer, action, args, result, message


class SocketInUse(RuntimeError):
    pass


class ControlServer:
    def __init__(
        self,
        path: Path,
        policy: Policy,
        handler: Handler,
        *,
        group_gid: int | None = None,
        peer_reader: Callable[[socket.socket], Peer] = peer_of,
        journal: Journal | None = None,
    ) -> None:
        self.path = path
        self._policy = policy
        self._handler = handler
        self._group_gid = group_gid
        self._peer_reader = peer_reader
        self._journal = journal
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        await _remove_stale(self.path)
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_LINE
        )
        os.chmod(self.path, SOCKET_MODE)
        if self._group_gid is not None:
            try:
                os.chown(self.path, -1, self._group_gid)
            except OSError as exc:
                log.warning(
                    "control socket not given to its group",
                    path=str(self.path),
                    error=str(exc),
                    reason="members are refused by file mode",
                    fix="run the daemon with that group, e.g. SupplementaryGroups=",
                )
        log.info("control socket listening", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._conversation(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _conversation(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = self._peer_reader(writer.get_extra_info("socket"))
        allowed = self._policy.allows(peer)
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                writer.write(encode_error(None, ErrorCode.BAD_REQUEST, "request line too long"))
                await writer.drain()
                return
            if not line:
                return
            writer.write(await self._answer(line, peer, allowed))
            await writer.drain()

    async def _answer(self, line: bytes, peer: Peer, allowed: bool) -> bytes:
        request_id: Any = None
        action, args = "?", None
        try:
            request = decode_request(line)
            request_id, action, args = request.id, request.action, request.args
            if not allowed:
                raise ControlError(
                    ErrorCode.PERMISSION_DENIED,
                    f"uid {peer.uid} may not use this socket (root, the daemon's user and "
                    "the control group may)",
                )
            result = await self._handler(request, peer)
        except ControlError as exc:
            self._record(peer, action, args, exc.code.value, exc.message)
            return encode_error(request_id, exc.code, exc.message)
        except Exception as exc:
            log.exception("control action failed", action=action, peer_uid=peer.uid)
            self._record(peer, action, args, ErrorCode.INTERNAL.value, str(exc))
            return encode_error(request_id, ErrorCode.INTERNAL, f"internal error: {exc}")
        if action != "status":  # status is polled by scripts; changes are what matters
            self._record(peer, action, args, "ok", "")
        return encode_result(request_id, result)

    def _record(self, peer: Peer, action: str, args: Any, result: str, message: str) -> None:
        method = log.info if result == "ok" else log.warning
        method(
            "control action",
            peer_uid=peer.uid,
            peer_pid=peer.pid,
            action=action,
            args=args,
            result=result,
            message=message or None,
        )
        if self._journal is not None:
            try:
                self._journal(peer, action, args, result, message)
            except Exception:  # the answer still goes out; the log line above has it all
                log.exception("control action not journaled", action=action)


async def _remove_stale(path: Path) -> None:
    """Remove a socket file nobody answers on; refuse to take over one that answers."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket; not replacing it")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2)
    except (OSError, TimeoutError):
        path.unlink()
        return
    writer.close()
    raise SocketInUse(f"{path}: another daemon answers on this control socket")

"""The client side of the control socket (blocking: it serves a command line)."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from typing import Any

from cmamd.control.protocol import MAX_LINE, Reply, Request, decode_reply, encode_request


class ClientError(Exception):
    """Could not talk to the daemon at all; ``exit_code`` for the command line."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_NOT_RUNNING = 3
EXIT_NO_PERMISSION = 77  # sysexits EX_NOPERM


class ControlClient:
    def __init__(self, path: Path, timeout_s: float = 120.0) -> None:
        self.path = path
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)

    def call(self, action: str, args: dict[str, Any] | None = None) -> Reply:
        request = Request(action, args or {}, next(self._ids))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout_s)
        try:
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError):
                raise ClientError(
                    f"the daemon is not running (no control socket answers at {self.path})",
                    EXIT_NOT_RUNNING,
                ) from None
            except PermissionError:
                raise ClientError(
                    f"permission denied: {self.path} (root, the daemon's user and the "
                    "control group may use it)",
                    EXIT_NO_PERMISSION,
                ) from None
            sock.sendall(encode_request(request))
            line = _read_line(sock)
        except TimeoutError:
            raise ClientError(f"no answer from the daemon in {self._timeout_s:g} s", 1) from None
        finally:
            sock.close()
        if not line:
            raise ClientError("the daemon closed the connection without answering", 1)
        try:
            return decode_reply(line)
        except ValueError as exc:
            raise ClientError(str(exc), 1) from None


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            return b"".join(chunks).split(b"\n", 1)[0]
        if size > 64 * MAX_LINE:
            raise ClientError("the daemon's reply is too long", 1)

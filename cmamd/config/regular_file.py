"""Reading a file named by the operator: a regular file only, bounded, never blocking.

``open()`` on a FIFO waits for a writer, forever (and under SIGHUP, inside the event
loop); a device such as /dev/zero never ends. The file is opened non-blocking, checked
to be a regular file on the opened descriptor (no race with a swap of the path), and
read up to a limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path names a FIFO, device, socket or directory, not a regular file."""


def read_regular(path: Path, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of ``path`` (so that callers can tell "too large")."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(0, f"not a regular file ({_kind(mode)})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"

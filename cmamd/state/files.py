"""The state directory's files: private permissions whatever the umask, one owner at a time.

The database holds live OAuth tokens, so the directory is created 0700 and every file in
it 0600. The umask only ever removes permission bits, and a restrictive one (0277) would
leave sqlite unable to write, so modes are set explicitly after creation.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from cmamd.logs import get_logger
from cmamd.state.errors import StateLocked

log = get_logger(__name__)


def prepare_dir(state_dir: Path) -> None:
    if not state_dir.exists():
        state_dir.mkdir(mode=0o700, parents=True)
        os.chmod(state_dir, 0o700)
        return
    mode = stat.S_IMODE(state_dir.stat().st_mode)
    if mode & 0o077:
        # Not ours to change (systemd's StateDirectoryMode= or the admin chose it); the
        # files inside stay 0600 anyway.
        log.warning("state directory is accessible to others", path=str(state_dir), mode=oct(mode))


def create_private(path: Path) -> None:
    """Create the file 0600 before sqlite does, and tighten one left looser by an admin."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def tighten_sidecars(db_path: Path) -> None:
    """Make sqlite's -wal and -shm files (they hold page copies, tokens included) 0600."""
    for suffix in ("-wal", "-shm"):
        sidecar = db_path.with_name(db_path.name + suffix)
        if sidecar.exists():
            os.chmod(sidecar, 0o600)


def lock_exclusive(path: Path) -> int:
    """Hold an exclusive lock on ``path`` for as long as the returned fd stays open.

    Two daemons on one state directory would each copy every trade: the second one to
    start gets :class:`StateLocked`. The kernel drops the lock when the process dies,
    however it dies, so a crash never leaves a stale lock behind.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateLocked(f"{path.parent} is in use by another cmamd process") from None
    except BaseException:
        os.close(fd)
        raise
    return fd

"""Who is on the other end of the control socket, and whether they may use it.

The kernel tells (SO_PEERCRED): pid, uid, gid of the connecting process at connect time,
which a client cannot forge. Allowed: root, the daemon's own user, and members of the
group named in the YAML (the peer process's primary or supplementary group, or the
user's membership in the group database). The file mode (0660) is the first fence; this
check is the one that holds even when a directory or umask is looser than intended.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = field(default_factory=frozenset)  # supplementary group ids


@dataclass(frozen=True, slots=True)
class Policy:
    daemon_uid: int
    group_gid: int | None = None  # the YAML's control.group, resolved

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, self.daemon_uid):
            return True
        if self.group_gid is None:
            return False
        return peer.gid == self.group_gid or self.group_gid in peer.groups


def peer_of(sock: socket.socket) -> Peer:
    """The peer's credentials from the kernel (Linux SO_PEERCRED), with its groups."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid, supplementary_groups(pid) | groups_of_user(uid, gid))


def groups_of_user(uid: int, gid: int) -> frozenset[int]:
    """The user's groups from the group database. Needed besides /proc: the units'
    ProtectProc=invisible hides other users' processes from the daemon."""
    try:
        name = pwd.getpwuid(uid).pw_name
        return frozenset(os.getgrouplist(name, gid))
    except (KeyError, OSError):
        return frozenset()


def supplementary_groups(pid: int, proc: Path = Path("/proc")) -> frozenset[int]:
    """The ``Groups:`` of ``/proc/<pid>/status``; empty when unreadable (then only the
    primary gid counts: a refusal, never a wrong grant)."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("Groups:"):
            return frozenset(int(g) for g in line.split()[1:] if g.isdigit())
    return frozenset()


def group_id(name: str) -> int:
    """The gid of a group name; KeyError when the system has no such group."""
    return grp.getgrnam(name).gr_gid

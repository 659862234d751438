from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_until
from structlog.testing import capture_logs

from cmamd.daemon.notify import SystemdNotifier, run_watchdog


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A stand-in for systemd's notification socket: a datagram socket in a tmp dir."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def pending(sock: socket.socket) -> list[bytes]:
    """Datagrams already queued, without waiting for more."""
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(2.0)


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    notifier.ready()
    notifier.reloading()
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.watchdog_interval_s() is None


def test_lifecycle_datagrams_are_exact(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path}, monotonic_usec=lambda: 123_456_789)
    assert notifier.enabled
    notifier.ready()
    notifier.status("copying 3 followers")
    notifier.reloading()
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()
    notifier.extend_timeout(150)
    assert [sock.recv(4096) for _ in range(7)] == [
        b"READY=1",
        b"STATUS=copying 3 followers",
        b"RELOADING=1\nMONOTONIC_USEC=123456789",
        b"READY=1",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"EXTEND_TIMEOUT_USEC=150000000",
    ]
    assert pending(sock) == []
    notifier.close()


def test_reloading_carries_the_current_monotonic_time(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = sock.recv(4096).split(b"\n")
    assert first == b"RELOADING=1"
    name, _, value = second.partition(b"=")
    assert name == b"MONOTONIC_USEC" and before <= int(value) <= after


def test_status_is_one_line_of_utf8(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.status("follower Zürich €\nsecond line")
    assert sock.recv(4096) == "STATUS=follower Zürich € second line".encode()


def test_abstract_namespace_socket() -> None:
    name = f"cmamd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"


def test_unsupported_address_disables_notifications() -> None:
    assert not SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    assert not SystemdNotifier({"NOTIFY_SOCKET": ""}).enabled


def test_send_failures_are_logged_once_and_recovery_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "later.sock"
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logged:
        notifier.ready()  # nobody listens yet: must not raise
        notifier.watchdog()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            sock.settimeout(2.0)
            notifier.watchdog()
            assert sock.recv(4096) == b"WATCHDOG=1"
    assert [(entry["log_level"], entry["event"]) for entry in logged] == [
        ("warning", "systemd notification failed"),
        ("info", "systemd notifications work again"),
    ]


def test_a_recreated_socket_is_reconnected(tmp_path: Path) -> None:
    # What `systemctl daemon-reexec` does to the notification socket.
    path = tmp_path / "notify.sock"
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    for expected in (b"READY=1", b"WATCHDOG=1"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            sock.settimeout(2.0)
            if expected == b"READY=1":
                notifier.ready()
            else:
                notifier.watchdog()
            assert sock.recv(4096) == expected
        path.unlink()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4242"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_our_pid(
    env: dict[str, str], expected: float | None
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=4242)
    assert notifier.watchdog_interval_s() == expected


def test_watchdog_pid_defaults_to_this_process() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier(env).watchdog_interval_s() == 1.0


class RecordingNotifier(SystemdNotifier):
    """Notes when (on the event loop's clock) each watchdog ping was sent."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.ping_times: list[float] = []

    def watchdog(self) -> None:
        self.ping_times.append(asyncio.get_running_loop().time())
        super().watchdog()


async def test_watchdog_pings_at_half_the_timeout_until_stopped(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    notifier = RecordingNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000"})
    stop = asyncio.Event()
    task = asyncio.create_task(run_watchdog(notifier, stop))
    await wait_until(lambda: len(notifier.ping_times) >= 4, 5.0, 0.005, what="four pings")
    stop.set()
    await asyncio.wait_for(task, timeout=1.0)
    count = len(notifier.ping_times)
    assert [sock.recv(4096) for _ in range(count)] == [b"WATCHDOG=1"] * count
    assert pending(sock) == []  # nothing after the stop
    gaps = [b - a for a, b in zip(notifier.ping_times, notifier.ping_times[1:], strict=False)]
    assert all(gap >= 0.03 - 1e-3 for gap in gaps), gaps


async def test_a_blocked_event_loop_stops_the_pings(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    notifier = RecordingNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})
    stop = asyncio.Event()
    task = asyncio.create_task(run_watchdog(notifier, stop))
    await asyncio.sleep(0.05)
    blocked_from = asyncio.get_running_loop().time()
    time.sleep(0.2)  # a bug holding the loop: systemd must stop hearing from us
    blocked_until = asyncio.get_running_loop().time()
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=1.0)
    assert notifier.ping_times, "the watchdog never pinged"
    assert not [t for t in notifier.ping_times if blocked_from < t < blocked_until]
    assert any(t >= blocked_until for t in notifier.ping_times)


async def test_stop_ends_a_long_watchdog_wait_at_once(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"})
    stop = asyncio.Event()
    task = asyncio.create_task(run_watchdog(notifier, stop))
    sock.setblocking(False)
    first = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 1.0)
    assert first == b"WATCHDOG=1"  # the first ping is immediate
    stop.set()
    await asyncio.wait_for(task, timeout=1.0)


async def test_without_a_watchdog_the_task_returns_at_once() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/run/systemd/notify"})
    await asyncio.wait_for(run_watchdog(notifier, asyncio.Event()), timeout=1.0)


def test_a_receiver_that_does_not_drain_never_blocks_the_sender(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})

    def flood() -> None:
        for n in range(5000):  # far more than a datagram socket queues
            notifier.status(f"{n} " + "x" * 500)
        notifier.ready()  # refused by the full socket: kept for later

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    sender.join(timeout=10)
    blocked = sender.is_alive()
    if blocked:
        sock.close()  # unblocks the old, blocking sender so the test can end
    assert not blocked, "a full notify socket blocked the sender"
    received = pending(sock)
    assert received and len(received) < 5000
    assert b"READY=1" not in received
    notifier.status("drained")
    assert pending(sock) == [b"READY=1", b"STATUS=drained"]

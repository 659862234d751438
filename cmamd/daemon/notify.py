"""systemd service notifications (``Type=notify``) and the watchdog keep-alive.

systemd learns that the daemon is up (READY=1), reloading its config (RELOADING=1),
stopping (STOPPING=1) and what it is doing (STATUS=...) through datagrams on the socket
named by ``$NOTIFY_SOCKET``. With ``WatchdogSec=`` it also expects WATCHDOG=1 at least
every ``$WATCHDOG_USEC`` and restarts the service otherwise: the pings come from a task on
the event loop, so a loop blocked by a bug stops them and systemd restarts us, rather
than a copier sitting there silently missing trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping

import sdnotify

from cmamd.logs import get_logger

log = get_logger(__name__)

MAX_UNDELIVERED = 8


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class _Transport(sdnotify.SystemdNotifier):  # type: ignore[misc]
    """sdnotify's sender, connected to the address we were given.

    ``sdnotify.SystemdNotifier.__init__`` reads ``os.environ["NOTIFY_SOCKET"]`` itself, which
    tests cannot redirect without touching the whole process, so the connection is made
    here the way it does it (a leading "@" names a socket in the abstract namespace);
    sending stays sdnotify's ``notify``. ``debug=True`` makes ``notify`` raise instead of
    swallowing every error, so a failure is logged rather than silently lost.
    """

    def __init__(self, address: str) -> None:
        self.debug = True
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.socket.connect("\0" + address[1:] if address.startswith("@") else address)
            # Sent from the event loop: a manager that does not drain its socket must not
            # freeze the daemon; a full socket raises BlockingIOError instead.
            self.socket.setblocking(False)
        except OSError:
            self.socket.close()
            raise

    def send(self, message: str) -> None:
        # sdnotify encodes as Latin-1; systemd reads UTF-8. Handing it the UTF-8 bytes as
        # Latin-1 text makes the two cancel out, so any STATUS text goes through intact.
        self.notify(message.encode("utf-8").decode("latin-1"))

    def close(self) -> None:
        self.socket.close()


class SystemdNotifier:
    """Notifications to the service manager; every call is a no-op outside systemd."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        monotonic_usec: Callable[[], int] = monotonic_usec,
        pid: int | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._monotonic_usec = monotonic_usec
        self._pid = os.getpid() if pid is None else pid
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._address = env.get("NOTIFY_SOCKET") or None
        if self._address is not None and not self._address.startswith(("/", "@")):
            log.warning(
                "systemd notify disabled",
                address=self._address,
                reason="unsupported NOTIFY_SOCKET address",
            )
            self._address = None
        self._transport: _Transport | None = None
        self._failing = False
        # State changes (READY, RELOADING, STOPPING) the full socket refused: sent again
        # before the next message, since systemd acts on them. STATUS and WATCHDOG are
        # superseded by the next ones and are simply dropped.
        self._undelivered: list[str] = []

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self) -> None:
        self._send("READY=1")

    def reloading(self) -> None:
        # systemd (Type=notify-reload) needs the timestamp in the same datagram to tell
        # this reload from an earlier one.
        self._send(f"RELOADING=1\nMONOTONIC_USEC={self._monotonic_usec()}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask systemd for ``seconds`` more before it gives up on the current start/stop
        (a start-up that makes progress may outlast ``TimeoutStartSec=``)."""
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def status(self, text: str) -> None:
        # A newline would start a new assignment: the status is one line.
        self._send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog timeout, or None without a watchdog for us."""
        if not self.enabled or not self._watchdog_usec:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(self._pid):
            return None  # the watchdog is meant for another process of the service
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            log.warning(
                "systemd watchdog disabled",
                value=self._watchdog_usec,
                reason="malformed WATCHDOG_USEC",
            )
            return None
        return usec / 2 / 1_000_000 if usec > 0 else None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        while self._undelivered:
            if not self._deliver(self._undelivered[0]):
                break
            self._undelivered.pop(0)
        delivered = not self._undelivered and self._deliver(message)  # keeps the order
        if not delivered and not message.startswith(("STATUS=", "WATCHDOG=")):
            self._undelivered = [*self._undelivered, message][-MAX_UNDELIVERED:]

    def _deliver(self, message: str) -> bool:
        """Send one datagram without blocking; False when the socket is full."""
        if self._address is None:
            return True
        # One retry on a fresh socket: after `systemctl daemon-reexec` the old connection
        # points at a socket file that no longer exists.
        for attempt in (1, 2):
            try:
                if self._transport is None:
                    self._transport = _Transport(self._address)
                self._transport.send(message)
            except BlockingIOError as error:
                self._report_failure(message, error)  # the receiver is not draining
                return False
            except OSError as error:
                self.close()
                if attempt == 2:
                    self._report_failure(message, error)
            else:
                if self._failing:
                    log.info("systemd notifications work again")
                    self._failing = False
                return True
        return True  # failed for another reason: reported, not worth keeping

    def _report_failure(self, message: str, error: OSError) -> None:
        # Once per outage: the watchdog would otherwise repeat it every few seconds.
        if not self._failing:
            log.warning(
                "systemd notification failed", message=message.split("\n")[0], error=str(error)
            )
            self._failing = True


async def run_watchdog(notifier: SystemdNotifier, stop: asyncio.Event) -> None:
    """Ping the watchdog at its interval until ``stop`` is set (returns at once without one)."""
    interval = notifier.watchdog_interval_s()
    if interval is None:
        return
    while not stop.is_set():
        notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)

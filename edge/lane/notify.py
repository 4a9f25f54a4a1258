"""systemd service notifications: READY, STATUS, WATCHDOG, STOPPING (``sd_notify`` protocol).

Why this exists: the units in ``systemd/`` are ``Type=notify`` with
``WatchdogSec=``. systemd then considers ``iad-edge run`` started only when it
says ``READY=1`` (engines loaded, bank uploaded, camera opened), and restarts
it when the ``WATCHDOG=1`` pings stop (a stalled frame loop). Without
``$NOTIFY_SOCKET`` (a shell, a test, the demo) every call is a no-op, so the
same code runs everywhere.

The protocol is one datagram per message on the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract namespace). The
``sdnotify`` package is used when it is installed; otherwise a few lines of
:mod:`socket` do the same. A failed send is logged once and never raised:
a notification problem must not stop the line.

Watchdog: :class:`Watchdog` reads ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``)
and sends ``WATCHDOG=1`` at most every half period. Two feeders use it:

* the frame loop calls :meth:`Watchdog.on_busy` (a busy listener of the lane:
  ``True`` when a frame's inspection starts, ``False`` when its decision is
  out); each call is a proof of progress and may ping;
* :meth:`Watchdog.start_heartbeat` pings while the lane is idle (no trigger on
  a stopped line is not a fault) **but not while one frame has been in
  inspection for longer than the watchdog period**, and not once
  ``healthy()`` says a lane thread died. So a hung expert, a deadlocked
  inspection thread or a dead lane stops the pings and systemd restarts the
  service (``Restart=on-failure``, SIGABRT first so the journal has a trace).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

try:  # optional: the tiny `sdnotify` package speaks the same protocol
    import sdnotify as _sdnotify
except ImportError:  # pragma: no cover - exercised when sdnotify is absent
    _sdnotify = None


def _socket_address(value: str) -> str:
    """``$NOTIFY_SOCKET`` as a socket address ('@name' -> abstract namespace '\\0name')."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends sd_notify messages; a no-op when ``$NOTIFY_SOCKET`` is unset.

    ``backend`` is ``"auto"`` (sdnotify when installed, else the socket),
    ``"sdnotify"`` or ``"socket"``; tests use both.
    """

    def __init__(self, socket_path: str | None = None, backend: str = "auto"):
        self.socket_path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.sent: list[str] = []  # last messages (kept short), for logs and tests
        self._lock = threading.Lock()
        self._warned = False
        self._sock: socket.socket | None = None
        self._sd = None
        if backend not in ("auto", "sdnotify", "socket"):
            raise ValueError(f"unknown notify backend {backend!r} (auto, sdnotify or socket)")
        self.backend = "socket" if backend == "auto" and _sdnotify is None else ("sdnotify" if backend == "auto" else backend)
        if self.enabled and self.backend == "sdnotify":
            if _sdnotify is None:
                raise ValueError("the sdnotify package is not installed (pip install sdnotify) or use backend='socket'")
            # sdnotify reads the variable itself and connects once.
            previous = os.environ.get("NOTIFY_SOCKET")
            os.environ["NOTIFY_SOCKET"] = self.socket_path
            try:
                self._sd = _sdnotify.SystemdNotifier()
            finally:
                if previous is None:
                    os.environ.pop("NOTIFY_SOCKET", None)
                else:
                    os.environ["NOTIFY_SOCKET"] = previous

    @property
    def enabled(self) -> bool:
        """True when running under systemd with Type=notify (``$NOTIFY_SOCKET`` set)."""
        return bool(self.socket_path)

    def notify(self, message: str) -> bool:
        """Send one message (e.g. ``"READY=1\\nSTATUS=..."``); False when disabled or the send failed."""
        if not self.enabled:
            return False
        with self._lock:
            try:
                if self.backend == "sdnotify":
                    if self._sd is None or self._sd.socket is None:
                        raise OSError(f"sdnotify could not connect to {self.socket_path}")
                    self._sd.socket.sendall(message.encode())
                else:
                    if self._sock is None:
                        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.sendto(message.encode(), _socket_address(self.socket_path))
            except OSError as exc:
                if not self._warned:
                    log.warning("systemd notification to %s failed (%s); further failures are not logged", self.socket_path, exc)
                    self._warned = True
                return False
            self.sent = (self.sent + [message])[-20:]
            return True

    def ready(self, status: str = "") -> bool:
        """The service is up: engines loaded, bank uploaded, camera opened."""
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> bool:
        """Free-text status shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str = "") -> bool:
        """A clean shutdown has begun (systemd then waits up to TimeoutStopSec)."""
        return self.notify("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> bool:
        """A reload is in progress (send :meth:`ready` when it is done)."""
        return self.notify("RELOADING=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start/stop time (a TensorRT engine build on first start can take minutes)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> bool:
        """One keep-alive ping."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._sd is not None and self._sd.socket is not None:
                self._sd.socket.close()
                self._sd.socket = None


def watchdog_period_s(environ: dict | None = None) -> float | None:
    """The watchdog period from ``$WATCHDOG_USEC`` (None when off or meant for another PID)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # set for a different process (e.g. inherited by a child)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` at most every half period, only while the frame loop makes progress.

    See the module docstring for how the lane feeds it. ``period_s`` defaults
    to ``$WATCHDOG_USEC``; without it (or without a notify socket) nothing is
    ever sent and every method is cheap.
    """

    def __init__(self, notifier: Notifier, period_s: float | None = None):
        self.notifier = notifier
        self.period_s = watchdog_period_s() if period_s is None else period_s
        self.pings = 0
        self._last_ping = float("-inf")  # the first kick always pings
        self._busy_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.period_s) and self.notifier.enabled

    @property
    def interval_s(self) -> float:
        """Seconds between pings (half the period, the sd_watchdog_enabled(3) advice)."""
        return (self.period_s or 0.0) / 2.0

    def kick(self) -> bool:
        """Ping if half a period has passed since the last ping; True when a ping was sent."""
        if not self.enabled:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last_ping < self.interval_s:
                return False
            self._last_ping = now
        if self.notifier.watchdog():
            self.pings += 1
            return True
        return False

    def on_busy(self, busy: bool) -> None:
        """Lane busy listener: a frame started (True) or its decision is out (False). Hot path: cheap."""
        self._busy_since = time.monotonic() if busy else None
        self.kick()

    def stalled(self) -> bool:
        """True while one frame has been in inspection for longer than the watchdog period."""
        since = self._busy_since
        return since is not None and self.period_s is not None and time.monotonic() - since > self.period_s

    def start_heartbeat(self, healthy: Callable[[], bool] = lambda: True) -> Watchdog:
        """Ping from a thread while idle; stop pinging when stalled or ``healthy()`` is False."""
        if not self.enabled or self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._beat, args=(healthy,), name="sd-watchdog", daemon=True)
        self._thread.start()
        return self

    def _beat(self, healthy: Callable[[], bool]) -> None:
        step = max(0.05, self.interval_s / 2.0)
        while not self._stop.wait(step):
            try:
                ok = healthy() and not self.stalled()
            except Exception:  # a broken check means: do not vouch for the lane
                log.exception("watchdog health check failed")
                ok = False
            if ok:
                self.kick()
            elif self.stalled():
                log.error("frame loop stalled for more than %.1f s: no more watchdog pings (systemd will restart)",
                          self.period_s or 0.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

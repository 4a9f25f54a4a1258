"""edge.lane.notify speaks the sd_notify protocol on a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from edge.lane.notify import Notifier, Watchdog, watchdog_period_s


@pytest.mark.parametrize("backend", ["socket", "sdnotify"])
def test_ready_status_watchdog_stopping_arrive_as_datagrams(deploy_notify_socket, backend: str) -> None:
    if backend == "sdnotify":
        pytest.importorskip("sdnotify", reason="sdnotify not installed (pip install sdnotify)")
    notifier = Notifier(deploy_notify_socket.path, backend=backend)
    assert notifier.enabled and notifier.backend == backend
    assert notifier.ready("engines loaded")
    assert notifier.watchdog()
    assert notifier.stopping("SIGTERM")
    got = deploy_notify_socket.messages(0.3)
    assert got == ["READY=1\nSTATUS=engines loaded", "WATCHDOG=1", "STOPPING=1\nSTATUS=SIGTERM"]
    notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"iad-test-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier("@" + name, backend="socket").ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_silent_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier()
    assert not notifier.enabled and notifier.ready() is False and notifier.watchdog() is False
    assert Watchdog(notifier).kick() is False


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"), backend="socket")
    assert notifier.ready() is False and notifier.watchdog() is False
    assert sum("systemd notification" in r.getMessage() for r in caplog.records) == 1


def test_watchdog_period_from_environment() -> None:
    assert watchdog_period_s({"WATCHDOG_USEC": "4000000"}) == 4.0
    assert watchdog_period_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 4.0
    assert watchdog_period_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "0"}) is None and watchdog_period_s({}) is None


def test_watchdog_pings_at_most_every_half_period(deploy_notify_socket) -> None:
    watchdog = Watchdog(Notifier(deploy_notify_socket.path, backend="socket"), period_s=0.4)
    sent = [watchdog.kick() for _ in range(50)]  # a burst of frames: one ping
    assert sent.count(True) == 1
    time.sleep(0.25)
    assert watchdog.kick() is True
    assert deploy_notify_socket.messages(0.2).count("WATCHDOG=1") == 2


class _FakeLane:
    """Just what the station's watchdog step uses (the real lane is exercised in test_deploy_run_notify)."""

    def __init__(self) -> None:
        self.listeners = []
        self._threads = [threading.Thread(target=time.sleep, args=(30,), daemon=True)]
        self._threads[0].start()

    def add_busy_listener(self, callback) -> None:
        self.listeners.append(callback)

    def healthy(self) -> bool:
        return all(t.is_alive() for t in self._threads)


def test_heartbeat_pings_while_idle_and_stops_when_a_frame_hangs(deploy_notify_socket, monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "300000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    lane = _FakeLane()
    watchdog = Watchdog(Notifier(deploy_notify_socket.path, backend="socket"))  # as Station's "ready" step wires it
    lane.add_busy_listener(watchdog.on_busy)
    watchdog.start_heartbeat(lane.healthy)
    try:
        assert deploy_notify_socket.wait_for("WATCHDOG=1", timeout=3, count=3), "idle lane must keep the watchdog fed"
        lane.listeners[0](True)  # a frame enters inspection ... and never leaves
        time.sleep(0.5)  # > period: the frame loop is stalled
        assert watchdog.stalled()
        before = deploy_notify_socket.messages(0.1).count("WATCHDOG=1")
        time.sleep(0.6)
        assert deploy_notify_socket.messages(0.1).count("WATCHDOG=1") == before, "a stalled loop must not be vouched for"
        lane.listeners[0](False)  # the decision finally came out: pings resume
        assert deploy_notify_socket.wait_for("WATCHDOG=1", timeout=2, count=before + 2)
    finally:
        watchdog.stop()

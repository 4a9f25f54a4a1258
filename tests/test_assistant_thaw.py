"""A lane killed mid-frame never leaves the assistant stopped (freeze lease + the assistant's thaw guard).

The "lane" is a real process running the lane's freezer (edge/assistant/freezer.py)
that SIGSTOPs the registered assistant as it does at the start of a frame and is
then SIGKILLed, so nothing of it can send the SIGCONT. The "assistant" process
registers itself and starts its thaw guard with the same calls as
`iad-edge assistant` (edge/commands/assistant.py), under a command line the
freezer accepts; it does not load a GGUF model (not needed for this fault).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from edge.assistant.busy_signal import BusySignal
from edge.assistant.freezer import LEASE_S, AssistantFreezer
from edge.assistant.thaw_guard import process_state

ASSISTANT = """
import os, sys, time
from edge.assistant import thaw_guard
from edge.assistant.busy_signal import BusySignal
busy = BusySignal(sys.argv[1])
guard = thaw_guard.start(busy.name) if sys.argv[2] == "guard" else None
busy.register_freezable(os.getpid())
print("ready", flush=True)
try:
    while True:
        time.sleep(0.05)
finally:
    thaw_guard.stop(guard)
"""

LANE = """
import sys, time
from edge.assistant.busy_signal import BusySignal
from edge.assistant.freezer import AssistantFreezer
busy = BusySignal(sys.argv[1])
freezer = AssistantFreezer(busy)
busy.set(True)
freezer(True)  # a frame is in flight: the assistant is stopped
print("frozen", freezer.freezes, flush=True)
time.sleep(60)
"""


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def busy_name():  # type: ignore[no-untyped-def]
    name = f"iad-busy-test-thaw-{uuid.uuid4().hex[:8]}"
    yield name
    BusySignal(name).unlink()


def _assistant(name: str, mode: str) -> subprocess.Popen:
    # argv: python -c CODE <busy> <mode> edge.cli assistant  -> the freezer's cmdline check accepts it
    proc = subprocess.Popen([sys.executable, "-c", ASSISTANT, name, mode, "edge.cli", "assistant"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _kill_lane_mid_frame(name: str, assistant: subprocess.Popen) -> None:
    lane = subprocess.Popen([sys.executable, "-c", LANE, name], stdout=subprocess.PIPE, text=True)
    assert lane.stdout.readline().split() == ["frozen", "1"]
    assert _wait(lambda: process_state(assistant.pid) == "T", 5), "the lane did not stop the assistant"
    lane.send_signal(signal.SIGKILL)
    lane.wait(10)


@pytest.mark.parametrize("mode", ["guard", "none"])
def test_sigkill_of_the_lane_mid_frame_the_assistant_runs_again_within_seconds(busy_name, mode) -> None:  # type: ignore[no-untyped-def]
    assistant = _assistant(busy_name, mode)
    try:
        _kill_lane_mid_frame(busy_name, assistant)
        killed = time.monotonic()
        resumed = _wait(lambda: process_state(assistant.pid) not in ("T", "t"), LEASE_S + 3)
        if mode == "none":  # without the guard (today's design) nothing resumes it: this is the fault
            assert not resumed
            os.kill(assistant.pid, signal.SIGCONT)
            return
        assert resumed, f"assistant still stopped {time.monotonic() - killed:.1f} s after the lane was killed"
        assert time.monotonic() - killed <= LEASE_S + 1.0
    finally:
        os.kill(assistant.pid, signal.SIGCONT)
        assistant.terminate()
        assistant.wait(10)


def test_a_frame_within_its_lease_is_not_thawed_early(busy_name) -> None:  # type: ignore[no-untyped-def]
    assistant = _assistant(busy_name, "guard")
    busy = BusySignal(busy_name)
    freezer = AssistantFreezer(busy)
    try:
        freezer(True)
        assert busy.freeze_lease() > time.monotonic_ns()
        time.sleep(min(1.0, LEASE_S / 2))
        assert process_state(assistant.pid) == "T"  # the guard respects a live lease
        freezer(False)
        assert busy.freeze_lease() == 0
        assert _wait(lambda: process_state(assistant.pid) != "T", 5)
    finally:
        freezer.close()
        busy.close()
        assistant.terminate()
        assistant.wait(10)


def test_the_pidfd_is_opened_before_the_cmdline_is_checked(busy_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The check must be about the process the pidfd holds: open first, then read /proc/<pid>/cmdline."""
    import edge.assistant.freezer as freezer_module

    other = subprocess.Popen(["sleep", "30"])
    calls: list[str] = []
    real_open = os.pidfd_open
    monkeypatch.setattr(freezer_module.os, "pidfd_open", lambda pid, *a: (calls.append("pidfd_open"), real_open(pid, *a))[1])
    monkeypatch.setattr(freezer_module, "_is_assistant", lambda pid: (calls.append("cmdline"), False)[1])
    busy = BusySignal(busy_name)
    try:
        busy.register_freezable(other.pid)
        freezer = AssistantFreezer(busy)
        freezer(True)
        assert calls[:2] == ["pidfd_open", "cmdline"], calls
        assert process_state(other.pid) != "T" and freezer.freezes == 0  # not an assistant: never stopped
        freezer.close()
    finally:
        other.kill()
        other.wait()
        busy.close()

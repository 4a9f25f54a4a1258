"""Hard yield: the lane stops the registered assistant process while a frame is in flight, and only that process."""

import subprocess
import sys
import time

import pytest

from edge.assistant.busy_signal import BusySignal
from edge.assistant.freezer import AssistantFreezer
from edge.config import load_recipe


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]  # R, S, T (stopped), ...


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def running_assistant(assistant_recipe_path):
    path = assistant_recipe_path()
    recipe = load_recipe(path)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "assistant", str(path), "--no-mqtt"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    busy = BusySignal(recipe.assistant.busy_signal)
    try:
        assert _wait(lambda: busy.freezable_pid() == proc.pid), "the assistant did not register for hard yield"
        yield proc, busy
    finally:
        proc.terminate()
        proc.wait(20)
        busy.close()


def test_the_registered_assistant_is_stopped_while_busy_and_resumed_after(running_assistant):
    proc, busy = running_assistant
    freezer = AssistantFreezer(busy)
    assert freezer.available
    freezer(True)
    assert _wait(lambda: _state(proc.pid) == "T", 5), "SIGSTOP not delivered"
    freezer(False)
    assert _wait(lambda: _state(proc.pid) != "T", 5)
    freezer(True)
    assert _wait(lambda: _state(proc.pid) == "T", 5)
    freezer.close()  # shutdown in the middle of a frame: never leave it stopped
    assert _wait(lambda: _state(proc.pid) != "T", 5)
    assert freezer.freezes == 2


def test_a_pid_that_is_not_an_assistant_is_never_stopped(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    busy = BusySignal(f"iad-busy-test-freeze-{other.pid}")
    try:
        busy.register_freezable(other.pid)
        freezer = AssistantFreezer(busy)
        freezer(True)
        time.sleep(0.2)
        assert _state(other.pid) != "T" and freezer.freezes == 0
        freezer.close()
    finally:
        other.kill()
        other.wait()
        busy.close()
        busy.unlink()


def test_the_assistant_withdraws_its_registration_when_it_exits(running_assistant):
    proc, busy = running_assistant
    proc.terminate()
    proc.wait(20)
    assert busy.freezable_pid() == 0

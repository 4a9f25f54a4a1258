"""The real-time drop-in gives the lane's decision-path threads the intended policy, and locks memory as it says.

`systemd/drop-in/10-realtime.conf` used `CPUSchedulingResetOnFork=yes`: every
thread the lane starts then ran SCHED_OTHER at nice 0, below the unit's
`Nice=-5`, and nothing called mlockall although the drop-in promised locked
memory. Here the lane runs in a process started the way the unit starts it
(`chrt`: SCHED_FIFO, with and without reset-on-fork) and each thread's policy,
priority and nice are read from /proc.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DROP_IN = REPO / "systemd" / "drop-in" / "10-realtime.conf"

LANE = r"""
import json, os, sys, threading, time
import numpy as np
from edge.config import parse_recipe
from edge.lane.lane import Lane
from edge.realtime import thread_sched
from edge.types import Frame, InspectionResult
from tests.fixtures.config import CONFIG_BASE_RECIPE

os.nice(-5) if os.nice(0) == 0 else None  # the unit's Nice=-5
seen = {}

class Inspector:
    expert = None
    def inspect(self, image):
        seen[threading.current_thread().name] = thread_sched(threading.get_native_id())
        return InspectionResult(0.1, "OK", "ok", [], np.zeros((4, 4), np.float32))

class Source:
    def __iter__(self):
        for n in range(5):
            seen[threading.current_thread().name] = thread_sched(threading.get_native_id())
            yield Frame(image=np.zeros((4, 4, 3), np.uint8), trigger_id=n, trigger_time=time.time())
    def close(self):
        pass

recipe = parse_recipe(CONFIG_BASE_RECIPE.replace("window_ms: 150", "window_ms: 60000"), sys.argv[1])
lane = Lane(recipe, Inspector(), Source(), pull=True)
lane.add_observer(lambda *a: seen.__setitem__(threading.current_thread().name, thread_sched(threading.get_native_id())))
lane.run()
seen["main"] = thread_sched()
print(json.dumps(seen))
"""


def _chrt_allowed() -> bool:
    return shutil.which("chrt") is not None and subprocess.run(["chrt", "-f", "10", "true"]).returncode == 0


def _threads(tmp_path: Path, *chrt: str) -> dict[str, list[int]]:
    (tmp_path / "line3.yaml").write_text("")
    proc = subprocess.run(["chrt", *chrt, "10", sys.executable, "-c", LANE, str(tmp_path / "line3.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _drop_in() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("="))
    parser.optionxform = str  # type: ignore[assignment]
    parser.read_string(DROP_IN.read_text())
    return parser["Service"]


def test_drop_in_does_not_reset_threads_and_asks_for_locked_memory() -> None:
    svc = _drop_in()
    assert svc.get("CPUSchedulingResetOnFork", "no") == "no", "threads would run SCHED_OTHER at nice 0"
    assert svc["CPUSchedulingPolicy"] == "fifo" and svc["LimitMEMLOCK"] == "infinity"
    assert "IAD_LOCK_MEMORY=1" in svc["Environment"]


@pytest.mark.skipif(not _chrt_allowed(), reason="this machine does not allow SCHED_FIFO (needs CAP_SYS_NICE)")
@pytest.mark.parametrize("reset_on_fork", [False, True], ids=["as-the-drop-in", "with-reset-on-fork"])
def test_decision_path_threads_are_realtime_and_bookkeeping_threads_are_not(tmp_path, reset_on_fork) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures.config import CONFIG_BASE_RECIPE  # noqa: F401 - the child imports it too

    threads = _threads(tmp_path, *(["--reset-on-fork", "-f"] if reset_on_fork else ["-f"]))
    fifo = os.SCHED_FIFO
    main_policy, main_prio, main_nice = threads["main"]
    assert main_policy & ~0x40000000 == fifo and main_prio == 10
    for name in ("lane-acquire", "lane-inspect"):
        policy, prio, nice = threads[name]
        assert (policy & ~0x40000000, prio) == (fifo, 10), f"{name}: policy {policy} prio {prio}"
        assert nice == main_nice, f"{name}: nice {nice}, process {main_nice}"
    post_policy, post_prio, _ = threads["lane-post"]
    assert post_policy == os.SCHED_OTHER and post_prio == 0  # bookkeeping never preempts a frame


def test_lock_memory_locks_or_says_why() -> None:
    """Locked: /proc shows the pages locked. Refused (RLIMIT_MEMLOCK too small, no CAP_IPC_LOCK): the reason is returned."""
    code = ("import json, resource\n"
            "from edge.realtime import lock_memory, locked_kib\n"
            "try:\n"
            "    resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
            "except (ValueError, OSError):\n"
            "    pass\n"
            "print(json.dumps([lock_memory(), locked_kib()]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    refused, kib = json.loads(proc.stdout)
    if refused is None:
        assert kib > 1000  # the interpreter's pages are locked
    else:
        assert "memory" in refused.lower() or "permitted" in refused.lower()
        assert kib == 0

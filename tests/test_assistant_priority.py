"""The assistant's two isolation mechanisms on their own: the shared busy flag and lowered priorities."""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid

from edge.assistant.busy_signal import BusySignal
from edge.assistant.priority import apply_priority, get_io_priority


def _lane_side(name: str, go, done) -> None:  # runs in another process: plays the real-time lane
    flag = BusySignal(name)
    flag.enter()
    go.set()
    done.wait(10)
    flag.leave()
    flag.close()


def test_busy_flag_set_in_one_process_is_seen_in_another() -> None:
    name = f"iad-busy-test-{uuid.uuid4().hex[:10]}"
    reader = BusySignal(name)
    try:
        assert not reader.busy()
        ctx = mp.get_context("spawn")
        go, done = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_lane_side, args=(name, go, done))
        proc.start()
        assert go.wait(30)
        assert reader.busy() and reader.busy_periods == 1
        done.set()
        proc.join(10)
        assert proc.exitcode == 0
        assert not reader.busy()
        assert reader.wait_idle(timeout=1.0) < 1.0
    finally:
        reader.unlink()
        reader.close()


def test_busy_flag_counts_frames_in_flight() -> None:
    flag = BusySignal(f"iad-busy-test-{uuid.uuid4().hex[:10]}")
    try:
        flag.enter()
        flag.enter()  # two frames in the pipeline
        flag.leave()
        assert flag.busy()
        flag.leave()
        assert not flag.busy()
        flag.set(True)  # the lane's on_busy(bool) listener form
        assert flag.busy() and flag.busy_periods == 2
        flag.set(False)
        assert not flag.busy()
    finally:
        flag.unlink()
        flag.close()


def _lower_and_report(queue) -> None:
    applied = apply_priority(nice=12, cpu_affinity=[0], sched_idle=True, io_priority="idle")
    queue.put((applied, os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)),
               os.sched_getscheduler(0) == os.SCHED_IDLE, get_io_priority()))


def test_priority_is_lowered_in_the_assistant_process_only() -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_lower_and_report, args=(queue,))
    proc.start()
    applied, nice, cpus, idle, io = queue.get(timeout=30)
    proc.join(10)
    assert nice == 12 and cpus == [0] and idle
    assert applied["scheduler"] == "SCHED_IDLE" and applied["nice"] == 12
    if "not_applied" not in applied:
        assert io == ("idle", 0)
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # this (test) process is untouched

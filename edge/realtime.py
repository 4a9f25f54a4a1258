"""Scheduling of the appliance's own threads, and memory locking.

Why per thread: the real-time drop-in (systemd/drop-in/10-realtime.conf) gives
the lane process SCHED_FIFO. Every thread the process starts inherits it (the
drop-in does not set ``CPUSchedulingResetOnFork``, which would make every
thread SCHED_OTHER at nice 0, below the unit's ``Nice=-5``). Threads on the
decision path (acquire, inspect, ONNX Runtime's workers, the MQTT network
loop) keep it; threads that only do bookkeeping after the decision (result
outbox, archive writer, post-processing) call :func:`background_thread` and
drop to SCHED_OTHER, so a PNG encode can never preempt a frame. A thread on the
decision path calls :func:`hot_thread`, which gives it the process's policy,
priority and nice even where the process was started with reset-on-fork (as far
as ``RLIMIT_RTPRIO``/``RLIMIT_NICE`` allow).

:func:`lock_memory` is ``mlockall(MCL_CURRENT | MCL_FUTURE)``: the drop-in asks
for it with ``IAD_LOCK_MEMORY=1`` and ``LimitMEMLOCK=infinity``, so a page-out
never stalls a frame. Standard library only (ctypes, /proc).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading

log = logging.getLogger(__name__)

SCHED_RESET_ON_FORK = 0x40000000
_REALTIME = (os.SCHED_FIFO, os.SCHED_RR)
_MCL_CURRENT, _MCL_FUTURE = 1, 2
_warned: set[str] = set()


def thread_sched(tid: int | None = None) -> tuple[int, int, int]:
    """(policy, rt_priority, nice) of thread ``tid`` of this process (default: the main thread), from /proc."""
    path = f"/proc/self/task/{tid}/stat" if tid else "/proc/self/stat"
    with open(path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()  # fields[0] is field 3 (state) of proc(5)
    return int(fields[41 - 3]), int(fields[40 - 3]), int(fields[19 - 3])


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def hot_thread() -> None:
    """Give the calling thread the main thread's scheduling policy, priority and nice (decision-path threads)."""
    try:
        policy, priority, nice = thread_sched()
        tid = threading.get_native_id()
        mine = thread_sched(tid)
    except OSError:
        return
    policy &= ~SCHED_RESET_ON_FORK
    if (policy, priority) != (mine[0] & ~SCHED_RESET_ON_FORK, mine[1]):
        try:
            os.sched_setscheduler(0, policy, os.sched_param(priority))
        except OSError as exc:
            _warn_once("policy", "cannot give lane threads the process's scheduling policy %d/%d (%s): "
                       "set LimitRTPRIO in the unit, or drop CPUSchedulingResetOnFork", policy, priority, exc)
    if nice != mine[2]:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError as exc:
            _warn_once("nice", "cannot give lane threads the process's nice %d (%s): set LimitNICE in the unit", nice, exc)


def background_thread() -> None:
    """Drop the calling thread to SCHED_OTHER if it inherited a real-time policy (threads off the decision path)."""
    try:
        if os.sched_getscheduler(0) & ~SCHED_RESET_ON_FORK in _REALTIME:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError as exc:  # lowering is always allowed; anything else is worth one line
        _warn_once("demote", "cannot move a background thread off the real-time policy (%s)", exc)


def lock_memory() -> str | None:
    """``mlockall(MCL_CURRENT | MCL_FUTURE)``; None when locked, else why not (e.g. RLIMIT_MEMLOCK too small)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def locked_kib() -> int:
    """VmLck of this process in KiB (what /proc says is locked)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    return 0

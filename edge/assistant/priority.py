"""Lower the assistant process's CPU and IO priority so the real-time lane keeps its latency.

Everything here is best-effort and reported, never fatal: a container may
forbid SCHED_IDLE or ``ioprio_set``; the assistant still runs (and says what
it could not apply in its ``status``/log) because yielding between tokens is
the second line of defence.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from typing import Any

log = logging.getLogger(__name__)

# ioprio_set(2): which = IOPRIO_WHO_PROCESS, class in the top 3 bits of a 16-bit value
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_CLASSES = {"realtime": 1, "best-effort": 2, "idle": 3}
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "arm64": 30, "i386": 289, "i686": 289, "armv7l": 314}


def set_io_priority(io_class: str = "idle", level: int = 7) -> None:
    """Set this process's IO class (``idle`` or ``best-effort`` with level 0..7) via the ioprio_set syscall."""
    number = _SYS_IOPRIO_SET.get(platform.machine())
    if number is None:
        raise OSError(f"ioprio_set syscall number unknown for {platform.machine()}")
    value = (_IOPRIO_CLASSES[io_class] << _IOPRIO_CLASS_SHIFT) | (0 if io_class == "idle" else level)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, value) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def get_io_priority() -> tuple[str, int] | None:
    """(class, level) of this process, or None when unavailable (used by tests and `status`)."""
    number = {"x86_64": 252, "aarch64": 31, "arm64": 31}.get(platform.machine())
    if number is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    value = libc.syscall(number, _IOPRIO_WHO_PROCESS, 0)
    if value < 0:
        return None
    names = {v: k for k, v in _IOPRIO_CLASSES.items()}
    return names.get(value >> _IOPRIO_CLASS_SHIFT, "none"), value & 0x1FFF


def apply_priority(
    nice: int = 10,
    cpu_affinity: list[int] | None = None,
    sched_idle: bool = True,
    io_priority: str = "idle",
) -> dict[str, Any]:
    """Apply nice, CPU affinity, SCHED_IDLE and IO priority to the current process; return what took effect.

    ``nice`` is an absolute target (0..19), not an increment, so applying twice
    (e.g. after a restart inside the same process) is harmless.
    """
    applied: dict[str, Any] = {}
    problems: list[str] = []
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > current:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        applied["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    except OSError as exc:
        problems.append(f"nice {nice}: {exc}")
    if cpu_affinity:
        try:
            os.sched_setaffinity(0, set(cpu_affinity))
            applied["cpu_affinity"] = sorted(os.sched_getaffinity(0))
        except (OSError, ValueError) as exc:
            problems.append(f"cpu_affinity {cpu_affinity}: {exc}")
    if sched_idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            applied["scheduler"] = "SCHED_IDLE"
        except OSError as exc:
            problems.append(f"SCHED_IDLE: {exc}")
    if io_priority != "unchanged":
        try:
            set_io_priority("idle" if io_priority == "idle" else "best-effort", 7)
            applied["io_priority"] = io_priority
        except (OSError, KeyError) as exc:
            problems.append(f"io priority {io_priority}: {exc}")
    if problems:
        applied["not_applied"] = problems
        for p in problems:
            log.warning("assistant priority not applied: %s", p)
    return applied

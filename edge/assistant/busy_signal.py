"""A shared-memory flag the real-time lane sets while frames are in flight.

Why shared memory: the assistant checks it between every generated token, so
the check must cost nanoseconds and no system call; the lane sets it around
every frame, so setting it must never block. A file in ``/dev/shm`` (that is
what POSIX ``shm_open`` creates on Linux) mapped with ``mmap`` gives exactly
that, with no resource tracker that could unlink the segment when one side
exits (``multiprocessing.shared_memory`` does that on Python < 3.13).

Layout (16 bytes): byte 0 = number of frames in flight, clipped to 255
(0 = idle); bytes 4..7 = little-endian pid of an assistant that asks to be
frozen while frames are in flight (0 = none, see ``edge.assistant.freezer``);
bytes 8..15 = little-endian count of busy periods (diagnostics); bytes 16..23 =
the freeze lease: ``CLOCK_MONOTONIC`` nanoseconds (one clock for every process
on the machine) until which the lane may keep the assistant stopped, 0 when it
is not frozen (``edge.assistant.thaw_guard`` thaws a stopped assistant whose
lease ran out, e.g. because the lane was killed mid-frame).
One writer (the lane), any number of readers. Standard library only: the
real-time lane imports this module.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import tempfile
import threading
import time
from pathlib import Path

_SIZE = 24
_SHM_DIR = Path("/dev/shm")


def signal_name(line: str, station: str) -> str:
    """Default flag name for a station (one lane + one assistant per station)."""
    return f"iad-busy-{line}-{station}"


def _path(name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"busy-signal name {name!r}: use letters, digits, '.', '_' and '-' only")
    base = _SHM_DIR if _SHM_DIR.is_dir() and os.access(_SHM_DIR, os.W_OK) else Path(tempfile.gettempdir())
    return base / name


class BusySignal:
    """The flag, opened by name; the lane uses :meth:`enter`/:meth:`leave` (or :meth:`set`), the assistant :meth:`busy`.

    Both sides may open it first: the segment is created on demand, zero-filled
    (idle). :meth:`unlink` removes the name (the lane does it at shutdown).
    """

    def __init__(self, name: str):
        self.name = name
        self.path = _path(name)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o660)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        self._lock = threading.Lock()  # the lane may call enter/leave from several stage threads
        self._in_flight = 0

    # --- writer side (real-time lane) -------------------------------------------------
    def enter(self) -> None:
        """A frame entered the lane (call at acquisition)."""
        with self._lock:
            self._in_flight += 1
            if self._in_flight == 1:
                count = struct.unpack_from("<Q", self._map, 8)[0] + 1
                struct.pack_into("<Q", self._map, 8, count)
            self._map[0] = min(self._in_flight, 255)

    def leave(self) -> None:
        """A frame left the lane (its decision was published)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._map[0] = min(self._in_flight, 255)

    def set(self, busy: bool) -> None:
        """``on_busy(bool)`` hook form: True when frames are in flight, False when the lane is idle."""
        with self._lock:
            if busy and self._map[0] == 0:
                count = struct.unpack_from("<Q", self._map, 8)[0] + 1
                struct.pack_into("<Q", self._map, 8, count)
            self._in_flight = 1 if busy else 0
            self._map[0] = 1 if busy else 0

    # --- reader side (assistant) ------------------------------------------------------
    def busy(self) -> bool:
        """True while the real-time lane has frames in flight (one byte read, no system call)."""
        return self._map[0] != 0

    def register_freezable(self, pid: int) -> None:
        """Assistant side: ask the lane to SIGSTOP ``pid`` while frames are in flight (0 withdraws)."""
        struct.pack_into("<I", self._map, 4, pid)

    def freezable_pid(self) -> int:
        """Lane side: the pid registered by :meth:`register_freezable`, or 0."""
        return int(struct.unpack_from("<I", self._map, 4)[0])

    def set_freeze_lease(self, until_ns: int) -> None:
        """Lane side: the assistant may stay stopped until ``time.monotonic_ns() == until_ns`` (0: not frozen)."""
        struct.pack_into("<Q", self._map, 16, max(0, int(until_ns)))

    def freeze_lease(self) -> int:
        """The lease written by :meth:`set_freeze_lease` (monotonic ns; 0 = none)."""
        return int(struct.unpack_from("<Q", self._map, 16)[0])

    @property
    def busy_periods(self) -> int:
        """How many times the lane went from idle to busy since the segment was created."""
        return int(struct.unpack_from("<Q", self._map, 8)[0])

    def wait_idle(self, timeout: float | None = None, poll_s: float = 0.001) -> float:
        """Block while the lane is busy (at most ``timeout`` s); return the seconds waited."""
        start = time.monotonic()
        while self._map[0] != 0:
            if timeout is not None and time.monotonic() - start >= timeout:
                break
            time.sleep(poll_s)
        return time.monotonic() - start

    def close(self) -> None:
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass

    def unlink(self) -> None:
        """Remove the name (readers that have it mapped keep a valid, idle-looking copy)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

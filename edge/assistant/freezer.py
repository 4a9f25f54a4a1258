"""Hard yielding: the lane stops the assistant process (SIGSTOP) while a frame is in flight.

Why, on top of the busy flag the assistant checks between tokens: llama.cpp
has steps that cannot be interrupted (a grammar-constrained sampling step took
up to ~8 ms even for the tiny test model), longer than a whole frame of a small
expert. Measured with ``bench/isolation.py`` on the 2-core machine: the lane's
p99 latency with the assistant saturated was 1.26–1.40× idle with the flag
alone, 0.91× with the freeze.

Safety, because stopping the wrong process would be a fault of its own:

* the assistant registers its own pid in the shared busy segment (opt-in,
  ``assistant.hard_yield``); the lane never guesses a pid;
* the lane first opens a **pidfd** (``os.pidfd_open``), then checks that
  ``/proc/<pid>/cmdline`` names an iad-edge assistant: signals go to the
  process the pidfd was opened on or fail, and since the check comes after the
  open, a pid reused between the two can never be the one signalled;
* every freeze has a **lease** (:data:`LEASE_S`, written to the busy segment
  before the SIGSTOP): the assistant's thaw guard, a separate tiny process
  (:mod:`edge.assistant.thaw_guard`), sends SIGCONT when a stopped assistant's
  lease has run out, so a lane killed mid-frame (SIGKILL, OOM, crash) cannot
  leave the assistant stopped for more than the lease, under systemd or under
  the demo's supervisor alike;
* SIGCONT at attach (a previous lane killed mid-frame may have left it
  stopped) and at close; systemd also sends SIGCONT after its stop signal.

Costs two ``pidfd_send_signal`` system calls per frame (a few µs).
"""

from __future__ import annotations

import logging
import os
import signal
import time

from edge.assistant.busy_signal import BusySignal

log = logging.getLogger(__name__)

LEASE_S = 2.0
"""Longest a single freeze may hold the assistant stopped; a frame that takes longer gets it thawed (isolation
degrades, nothing else), a lane that died mid-frame leaves it stopped at most this long."""


def _is_assistant(pid: int) -> bool:
    """True when ``pid`` runs `iad-edge assistant` (or `python -m edge.cli assistant`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return False
    return b"assistant" in args and any(b"iad-edge" in a or b"edge.cli" in a for a in args)


class AssistantFreezer:
    """Busy listener for the lane: ``freezer(True)`` stops the registered assistant, ``freezer(False)`` resumes it."""

    def __init__(self, busy: BusySignal):
        self.busy = busy
        self.available = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")
        self._pid = 0
        self._pidfd: int | None = None
        self._stopped = False
        self.freezes = 0
        if not self.available:
            log.warning("hard yield unavailable (needs Linux >= 5.3 pidfds); the assistant only pauses between tokens")
        else:
            self._resume_registered()

    def _target(self) -> int | None:
        pid = self.busy.freezable_pid()
        if pid != self._pid:
            self._release()
            self._pid = pid
            if pid and pid != os.getpid():
                try:
                    fd = os.pidfd_open(pid)  # first the handle, then the check: the check is about this process
                except OSError as exc:
                    log.warning("hard yield: cannot open assistant pid %d (%s)", pid, exc)
                else:
                    if _is_assistant(pid):
                        self._pidfd = fd
                    else:
                        os.close(fd)
                        log.warning("hard yield: pid %d registered in the busy segment is not an iad-edge assistant; ignored", pid)
        return self._pidfd

    def _signal(self, signum: int) -> bool:
        fd = self._target()
        if fd is None:
            return False
        try:
            signal.pidfd_send_signal(fd, signum)
            return True
        except (ProcessLookupError, PermissionError, OSError):
            self._release()  # gone (or not ours): wait for the next registration
            return False

    def _resume_registered(self) -> None:
        self._signal(signal.SIGCONT)

    def __call__(self, busy: bool) -> None:
        if not self.available:
            return
        if busy and not self._stopped:
            self.busy.set_freeze_lease(time.monotonic_ns() + int(LEASE_S * 1e9))  # before the stop, never after
            self._stopped = self._signal(signal.SIGSTOP)
            self.freezes += int(self._stopped)
            if not self._stopped:
                self.busy.set_freeze_lease(0)
        elif not busy and self._stopped:
            self._signal(signal.SIGCONT)
            self._stopped = False
            self.busy.set_freeze_lease(0)

    def _release(self) -> None:
        if self._pidfd is not None:
            try:
                os.close(self._pidfd)
            except OSError:
                pass
        self._pidfd = None
        self._pid = 0
        self._stopped = False

    def close(self) -> None:
        """Resume the assistant (never leave it stopped) and drop the pidfd."""
        if self.available:
            self._signal(signal.SIGCONT)
            self.busy.set_freeze_lease(0)
        self._release()

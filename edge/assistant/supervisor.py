"""Keep the assistant process alive: restart it when it crashes, with back-off.

Used by ``iad-edge demo`` (production uses systemd ``Restart=on-failure`` with
the unit in ``systemd/``). The assistant is a separate OS process precisely so
that a llama.cpp abort (SIGABRT, SIGSEGV, OOM kill) costs only the assistant:
the lane never shares memory, threads or the GIL with it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edge.processes import terminate

log = logging.getLogger(__name__)


class AssistantSupervisor:
    """Runs ``iad-edge assistant RECIPE ...`` as a child process and restarts it when it exits unexpectedly."""

    def __init__(self, recipe: str | Path, args: Sequence[str] = (), backoff_s: Sequence[float] = (0.5, 1.0, 2.0, 5.0),
                 log_path: Path | None = None, stable_s: float = 30.0):
        self.cmd = [sys.executable, "-m", "edge.cli", "assistant", str(recipe), *args]
        self.backoff_s = list(backoff_s)
        self.stable_s = stable_s
        self.log_path = log_path
        self.restarts = 0
        self.exits: list[int] = []  # return codes (negative = killed by that signal)
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="assistant-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> AssistantSupervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self._lock:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            self._started_at = time.monotonic()
        if out is not subprocess.DEVNULL:
            out.close()
        log.info("assistant started (pid %s)", self.proc.pid)

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                proc = self.proc
            rc = proc.poll() if proc is not None else 0
            if rc is None:
                self._stop.wait(0.1)
                continue
            if self._stop.is_set():
                return
            self.exits.append(rc)
            if time.monotonic() - self._started_at > self.stable_s:
                failures = 0
            delay = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
            failures += 1
            log.warning("assistant exited with %s; restarting in %.1f s", rc, delay)
            if self._stop.wait(delay):
                return
            self.restarts += 1
            self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising and terminate the child (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        with self._lock:
            proc = self.proc
        terminate(proc, timeout)

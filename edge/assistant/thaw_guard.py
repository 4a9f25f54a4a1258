"""The assistant's thaw guard: a stopped assistant is resumed when its freeze lease runs out.

Why a separate process: the lane SIGSTOPs the assistant while a frame is in
flight (:mod:`edge.assistant.freezer`). If the lane dies in that moment
(SIGKILL, OOM killer, a crash in native code) nobody would send the SIGCONT,
and a watchdog *thread* inside the assistant cannot help: it is stopped with
the process. This guard is a tiny process of its own, started by the assistant
when it registers for hard yield and ending when the assistant ends (it waits
on the assistant's pidfd). Every few hundred milliseconds it looks at the
assistant's state; stopped with no lease, or with a lease that has run out
(``BusySignal.freeze_lease``, monotonic clock), means the lane is not going to
resume it, so the guard does. The same holds in the demo (a supervised child
process) and under systemd (the guard lives in the assistant unit's cgroup).

Standard library only; it costs one /proc read per poll.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import time

from edge.assistant.busy_signal import BusySignal

log = logging.getLogger(__name__)

POLL_S = 0.2


def process_state(pid: int) -> str:
    """One letter from /proc/<pid>/stat: R, S, D, T (stopped), t, Z, ... ('' when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def guard(busy_name: str, pid: int, poll_s: float = POLL_S) -> int:
    """Watch ``pid`` until it exits; resume it whenever it is stopped without a valid freeze lease."""
    pidfd = os.pidfd_open(pid)
    busy = BusySignal(busy_name)
    thawed = 0
    try:
        while True:
            ready, _, _ = select.select([pidfd], [], [], poll_s)
            if ready:  # the assistant exited: nothing left to guard
                return thawed
            if process_state(pid) not in ("T", "t"):
                continue
            lease = busy.freeze_lease()
            if lease and time.monotonic_ns() < lease:
                continue  # a frame is in flight: the lane will resume it
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGCONT)
            except ProcessLookupError:
                return thawed
            thawed += 1
            log.warning("thaw guard: assistant %d was stopped %s; resumed it (the lane that froze it is gone)",
                        pid, "past its freeze lease" if lease else "without a freeze lease")
    finally:
        os.close(pidfd)
        busy.close()


def start(busy_name: str, pid: int | None = None) -> subprocess.Popen | None:
    """Start the guard for ``pid`` (default: this process); None where pidfds are unavailable."""
    if not (hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")):
        return None
    return subprocess.Popen([sys.executable, "-m", "edge.assistant.thaw_guard", busy_name, str(pid or os.getpid())],
                            stdin=subprocess.DEVNULL, close_fds=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Resume a stopped iad-edge assistant whose freeze lease ran out.")
    parser.add_argument("busy_signal", help="name of the busy segment (assistant.busy_signal)")
    parser.add_argument("pid", type=int, help="the assistant's pid")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        guard(args.busy_signal, args.pid)
    except ProcessLookupError:
        pass  # the assistant is already gone
    return 0


if __name__ == "__main__":
    sys.exit(main())

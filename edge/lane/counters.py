"""Thread-safe counters of the real-time lane (published on ``status``)."""

from __future__ import annotations

import threading

COUNTER_NAMES = (
    "frames",  # triggers seen (every one gets exactly one decision)
    "decisions",  # decisions made (== frames once the lane is idle)
    "ok",
    "ng",
    "fail_safe",  # decisions that are the fail-safe verdict (any reason)
    "dropped",  # frames that found the inspection queue full (fail-safe, not inspected)
    "late",  # decisions made after the window: not published
    "undelivered",  # decisions not published because the broker was away (never queued for later)
    "stage_errors",  # frames whose inspection raised (bad frame, expert error)
    "non_finite",  # of those: NaN/inf in the expert output, score or map (fail-safe, never OK by accident)
    "recipe_applied",
    "recipe_rejected",
)


class Counters:
    """A dict of integers behind a lock; ``snapshot()`` for status messages and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = {name: 0 for name in COUNTER_NAMES}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

"""Human output of the lane for ``iad-edge run`` and ``iad-edge demo``: one line per decision, a summary."""

from __future__ import annotations

import contextlib
import signal
import statistics
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from edge.types import Decision, Frame, InspectionResult


def decision_line(decision: Decision, frame: Frame | None = None) -> str:
    """``#12  NG  score 0.412  41.3 ms  2 regions  [sent]  reason`` (reason only for fail-safe decisions)."""
    score = "  -  " if decision.score is None else f"{decision.score:.3f}"
    line = (f"#{decision.trigger_id:<5d} {decision.verdict:<2s}  score {score}  {decision.latency_ms:7.1f} ms  "
            f"{decision.region_count} region{'s' if decision.region_count != 1 else ' '}  [{decision.delivery}]")
    if frame is not None and frame.defect_type:
        line += f"  (injected: {frame.defect_type})"
    if decision.fail_safe:
        line += f"  FAIL-SAFE: {decision.reason}"
    return line


class DecisionPrinter:
    """Lane observer that prints each decision and keeps what the summary needs."""

    def __init__(self, stream: TextIO = sys.stdout, quiet: bool = False):
        self.stream = stream
        self.quiet = quiet
        self.latencies: list[float] = []
        self.truth: list[tuple[bool, str]] = []  # (had injected defect, verdict)
        self._lock = threading.Lock()

    def __call__(self, frame: Frame, result: InspectionResult | None, decision: Decision) -> None:
        with self._lock:
            self.latencies.append(decision.latency_ms)
            if frame.source == "synthetic":
                self.truth.append((frame.defect_type is not None, decision.verdict))
            if not self.quiet:
                print(decision_line(decision, frame), file=self.stream, flush=True)

    def summary(self, counters: dict[str, Any]) -> str:
        lines = [
            f"frames {counters.get('frames', 0)}, decisions {counters.get('decisions', 0)}: "
            f"OK {counters.get('ok', 0)}, NG {counters.get('ng', 0)} (fail-safe {counters.get('fail_safe', 0)}); "
            f"not published: late {counters.get('late', 0)}, broker away {counters.get('undelivered', 0)}; "
            f"queue-full {counters.get('dropped', 0)}"
        ]
        if self.latencies:
            ordered = sorted(self.latencies)
            p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
            lines.append(f"trigger->decision latency: median {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, "
                         f"max {ordered[-1]:.1f} ms")
        if self.truth:
            defects = [v for d, v in self.truth if d]
            goods = [v for d, v in self.truth if not d]
            lines.append(f"injected defects rejected: {sum(v == 'NG' for v in defects)}/{len(defects)}; "
                         f"good parts accepted: {sum(v == 'OK' for v in goods)}/{len(goods)}")
        return "\n".join(lines)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """``with stop_on_signals() as stop:`` an event set by SIGTERM/SIGINT; the old handlers come back afterwards.

    A second SIGINT raises KeyboardInterrupt as usual. Outside the main thread
    (signals cannot be caught there) the event is simply never set by a signal.
    """
    event = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        event.set()

    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

"""Shadow mode: judge a candidate recipe on the live frames without telling the PLC anything.

``iad-edge run RECIPE --shadow CANDIDATE.yaml`` keeps deciding with RECIPE and,
for every inspected frame, asks "what would CANDIDATE have said?". Nothing
of the candidate is published as a decision or result; what comes out is a
comparison: how many verdicts would change (OK->NG, NG->OK), with examples,
on the status (``status.extras.shadow``), in the log, and as a summary at exit.

Two ways to get the candidate's verdict, chosen per frame:

* **re-decide** (free): the candidate uses the same expert, bank, tiling and
  ROI, so the live anomaly map and image score are valid for it; only the
  thresholds and rules are applied again (regions cut at the candidate's pixel
  threshold, the candidate's zones and areas). No extra inference.
* **re-inspect**: the candidate changes what the expert computes (another
  bank, model, tiling or ROI, or it needs region defect types). A second
  :class:`~edge.inspector.Inspector` runs it in a background thread with a
  bounded queue (frames that find it busy are skipped and counted, so the
  real-time lane is never held up). With the same ONNX model it shares the
  live ONNX Runtime session (one model in memory, its own bank).

:class:`edge.station.Station` hooks it to the lane (step ``shadow``: an observer,
called off the hot path) and keeps ``summary_lines()`` for ``iad-edge run`` to print at exit.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.config import Recipe
from edge.inspector import Inspector
from edge.regions import extract_regions
from edge.types import Frame, InspectionResult
from edge.verdict import decide

log = logging.getLogger(__name__)

MAX_EXAMPLES = 10


def same_computation(live: Recipe, candidate: Recipe) -> bool:
    """Does the candidate see the same anomaly map and score as the live recipe (so re-deciding is enough)?"""
    return (
        candidate.expert == live.expert
        and candidate.bank == live.bank
        and candidate.tiling == live.tiling
        and candidate.roi == live.roi
        and not candidate.rules.always_reject
    )


def redecide(result: InspectionResult, candidate: Recipe) -> tuple[str, str]:
    """The candidate's (verdict, reason) from the live map and score."""
    amap = result.anomaly_map
    offset = (0, 0)
    if candidate.roi is not None:
        roi = candidate.roi
        amap = amap[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]
        offset = (roi.x, roi.y)
    regions = extract_regions(amap, candidate.thresholds.pixel, offset, candidate.pixel_pitch_mm)
    verdict = decide(float(result.score), regions, candidate)
    return verdict.verdict, verdict.reason


def _second_slot(expert: Any) -> Any:
    """The live ONNX Runtime expert with its own bank slot (shared session), or None for other backends."""
    if type(expert).__name__ != "OnnxRuntimeExpert":
        return None
    clone = copy.copy(expert)  # shares .session; set_bank replaces the clone's own bank attributes
    clone.close = lambda: None  # the session belongs to the live expert
    return clone


@dataclass
class Example:
    trigger_id: int
    live: str
    candidate: str
    score: float | None
    live_reason: str
    candidate_reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "trigger_id": self.trigger_id, "live": self.live, "candidate": self.candidate,
            "score": None if self.score is None else round(self.score, 6),
            "live_reason": self.live_reason, "candidate_reason": self.candidate_reason,
        }


class ShadowEvaluator:
    """Compares the candidate's verdicts with the live ones (lane observer: ``observe(frame, result, decision)``)."""

    def __init__(
        self,
        candidate: Recipe,
        live_inspector: Any,
        set_status: Callable[[str, Any], None] = lambda key, value: None,
        queue_size: int = 4,
        max_examples: int = MAX_EXAMPLES,
    ):
        self.candidate = candidate
        self.live_inspector = live_inspector
        self.set_status = set_status
        self.max_examples = max_examples
        self.compared = self.changed = self.ok_to_ng = self.ng_to_ok = 0
        self.skipped = self.not_compared = self.errors = 0
        self.redecided = self.reinspected = 0
        self.examples: list[Example] = []
        self._lock = threading.Lock()
        self._inspector: Any = None
        self._queue: queue.Queue[tuple[Frame, InspectionResult] | None] = queue.Queue(maxsize=queue_size)
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ observer
    def observe(self, frame: Frame, result: InspectionResult | None, decision: Any) -> None:
        """Lane observer (post thread). Frames without an inspection (fail-safe) cannot be compared."""
        if result is None:
            with self._lock:
                self.not_compared += 1
            return
        live_recipe = self.live_inspector.recipe
        if same_computation(live_recipe, self.candidate):
            verdict, reason = redecide(result, self.candidate)
            with self._lock:
                self.redecided += 1
            self._record(frame, result, verdict, reason)
            return
        self._ensure_worker()
        try:
            self._queue.put_nowait((frame, result))
        except queue.Full:
            with self._lock:
                self.skipped += 1
            self._publish()

    def _record(self, frame: Frame, result: InspectionResult, verdict: str, reason: str) -> None:
        with self._lock:
            self.compared += 1
            if verdict != result.verdict:
                self.changed += 1
                if verdict == "NG":
                    self.ok_to_ng += 1
                else:
                    self.ng_to_ok += 1
                if len(self.examples) < self.max_examples:
                    self.examples.append(Example(frame.trigger_id, result.verdict, verdict, float(result.score),
                                                 result.reason, reason))
                log.info("shadow: trigger %s would be %s instead of %s (%s)", frame.trigger_id, verdict, result.verdict, reason)
        self._publish()

    def _publish(self) -> None:
        self.set_status("shadow", self.summary())

    # ------------------------------------------------------------------ re-inspect
    def prepare(self) -> None:
        """Load the candidate's own inspector now (re-inspect mode) instead of at the first frame."""
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self._worker is not None:
            return

        live = self.live_inspector
        expert = _second_slot(live.expert) if self.candidate.expert == live.recipe.expert else None
        if expert is not None:
            inspector = Inspector(self.candidate, expert)
            inspector.load_bank(self.candidate.bank.path)
        else:
            inspector = Inspector.from_recipe(self.candidate)
        self._inspector = inspector
        self._worker = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            frame, result = item
            try:
                shadow = self._inspector.inspect(frame.image)
            except Exception as exc:  # shadow failures never touch the lane
                with self._lock:
                    self.errors += 1
                log.warning("shadow: trigger %s: candidate could not inspect: %s", frame.trigger_id, exc)
                continue
            with self._lock:
                self.reinspected += 1
            self._record(frame, result, shadow.verdict, shadow.reason)

    def close(self) -> None:
        """Finish the frames already queued for re-inspection, then stop the worker."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(60)
            if self._inspector is not None and self._inspector.expert is not self.live_inspector.expert:
                self._inspector.expert.close()
        self._publish()

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "candidate": str(self.candidate.source_path) if self.candidate.source_path else None,
                "candidate_sha256": self.candidate.sha256,
                "compared": self.compared,
                "changed": self.changed,
                "ok_to_ng": self.ok_to_ng,
                "ng_to_ok": self.ng_to_ok,
                "redecided": self.redecided,
                "reinspected": self.reinspected,
                "skipped": self.skipped,
                "not_compared": self.not_compared,
                "errors": self.errors,
                "examples": [e.to_json() for e in self.examples],
            }

    def summary_lines(self) -> list[str]:
        """What `iad-edge run --shadow` prints at exit."""
        s = self.summary()
        share = f" ({s['changed'] / s['compared']:.1%})" if s["compared"] else ""
        lines = [
            f"shadow {s['candidate']}: {s['changed']} of {s['compared']} compared verdicts would change{share}: "
            f"{s['ok_to_ng']} OK->NG, {s['ng_to_ok']} NG->OK",
        ]
        if s["skipped"] or s["not_compared"] or s["errors"]:
            lines.append(f"  not compared: {s['skipped']} skipped (candidate busy), {s['not_compared']} fail-safe frames, "
                         f"{s['errors']} candidate errors")
        for e in s["examples"]:
            lines.append(f"  trigger {e['trigger_id']}: {e['live']} -> {e['candidate']} (score {e['score']}; "
                         f"candidate: {e['candidate_reason']}; live: {e['live_reason']})")
        return lines

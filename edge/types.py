"""Plain data passed between the stages of the lane.

Kept free of any backend or transport so that every module can import it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np


class Verdict(str, Enum):
    """OK or NG (a string enum: compares, prints, formats and serialises as ``"OK"``/``"NG"``)."""

    OK = "OK"
    NG = "NG"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


@dataclass
class Frame:
    """One acquired image and where it came from.

    ``trigger_id`` is the producer's frame id (or a counter) and tags every
    message about this part; ``trigger_time`` is the wall-clock time (epoch
    seconds) of the trigger, published as data; ``trigger_mono`` is the same
    moment on the monotonic clock, from which the decision window is measured
    (an NTP step of the wall clock must not move a deadline).
    """

    image: np.ndarray
    trigger_id: int
    trigger_time: float
    source: str = ""
    name: str = ""
    ground_truth: np.ndarray | None = None  # bool mask of an injected defect (synthetic source)
    defect_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    trigger_mono: float = field(default_factory=time.monotonic)  # time.monotonic() at the trigger


@dataclass
class Region:
    """A connected component of the thresholded anomaly map, in original frame pixels.

    ``bbox`` is ``[x0, y0, x1, y1]`` with x1/y1 exclusive (x1 = x0 + width).
    """

    bbox: list[int]
    area_px: int
    centroid: list[float]
    peak: float
    mean: float
    location: str
    area_mm2: float | None = None
    rejects: bool = True
    zone: str | None = None  # name of the recipe zone holding the centroid (rules.zones)
    defect_type: str | None = None  # nearest defect-type prototype, when prototypes are calibrated
    feature: np.ndarray | None = field(default=None, repr=False)  # pooled L2-normalised DINOv2 feature

    def to_json(self) -> dict[str, Any]:
        out = {
            "bbox": [int(v) for v in self.bbox],
            "area_px": int(self.area_px),
            "centroid": [round(float(v), 2) for v in self.centroid],
            "peak": round(float(self.peak), 6),
            "mean": round(float(self.mean), 6),
            "location": self.location,
            "rejects": bool(self.rejects),
        }
        if self.area_mm2 is not None:
            out["area_mm2"] = round(float(self.area_mm2), 4)
        if self.zone is not None:
            out["zone"] = self.zone
        if self.defect_type is not None:
            out["defect_type"] = self.defect_type
        return out


@dataclass
class InspectionResult:
    """Everything the expert and the rules concluded about one image."""

    score: float
    verdict: Verdict
    reason: str
    regions: list[Region]
    anomaly_map: np.ndarray = field(repr=False)  # float32, frame size (zeros outside the ROI)
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage
    patch_features: np.ndarray | None = field(default=None, repr=False)  # [tiles, h, w, D]

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(float(self.score), 6),
            "verdict": self.verdict,
            "reason": self.reason,
            "regions": [r.to_json() for r in self.regions],
            "timings": {k: round(float(v), 3) for k, v in self.timings.items()},
        }


@dataclass
class Decision:
    """What the PLC is told about one part (and what happened to that message).

    ``fail_safe`` is true when the verdict is the recipe's fail-safe verdict
    because the lane could not decide (stage error, bad frame, full queue,
    window exceeded); ``reason`` then says why. ``delivery`` records what became
    of the MQTT decision message: ``sent``, ``late`` (window already over, not
    published), ``disconnected`` (broker away, not published: decisions are
    never queued for later), ``error``, or ``local`` (MQTT disabled).
    """

    trigger_id: int
    verdict: Verdict
    reason: str
    score: float | None
    trigger_time: float
    decided_at: float
    window_ms: float
    fail_safe: bool = False
    region_count: int = 0
    delivery: str = "pending"
    timings: dict[str, float] = field(default_factory=dict)
    trigger_mono: float | None = None  # monotonic clock: what deadlines are measured on
    decided_mono: float | None = None
    session: str = ""  # with trigger_id identifies the part (frame ids restart with the lane and the camera)

    @property
    def latency_ms(self) -> float:
        """Trigger to decision, in milliseconds (monotonic clock when known)."""
        if self.trigger_mono is not None and self.decided_mono is not None:
            return (self.decided_mono - self.trigger_mono) * 1000.0
        return (self.decided_at - self.trigger_time) * 1000.0

    @property
    def deadline(self) -> float:
        """Epoch seconds after which this decision must not reach the PLC (published data, not used to decide)."""
        return self.trigger_time + self.window_ms / 1000.0

    def remaining_s(self, now_mono: float | None = None) -> float:
        """Seconds left in the decision window (negative when over), on the monotonic clock.

        Without ``trigger_mono`` (a decision built by hand) the wall clock is used.
        """
        if self.trigger_mono is None:
            return self.deadline - time.time()
        now = time.monotonic() if now_mono is None else now_mono
        return self.trigger_mono + self.window_ms / 1000.0 - now


class Expert(Protocol):
    """A loaded region expert with a bank installed."""

    resolution: int  # square model input size in pixels
    patch_size: int  # 14 for DINOv2
    feature_dim: int  # D
    manifest: dict[str, Any]  # manifest.json of the exported graph
    providers: list[str]  # what actually runs (e.g. ['CPUExecutionProvider'])

    def set_bank(self, bank: np.ndarray) -> None:
        """Install the memory bank, float32 [N, D], L2-normalised rows (upload once per calibration)."""

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [B, R, R, 3] RGB -> (distances float32 [B, R/14, R/14], features float32 [B, R/14, R/14, D])."""

    def close(self) -> None:
        """Release sessions / device buffers."""


class InspectorLike(Protocol):
    """What the lane needs from an inspector (:class:`edge.inspector.Inspector` is the implementation)."""

    expert: Expert

    def inspect(self, image: np.ndarray) -> InspectionResult:
        """One frame in, one result out (raises BadFrameError for a frame it cannot judge)."""

    def update_recipe(self, recipe: Any) -> None:
        """Switch to a new recipe between two frames (raises when its bank/model cannot load)."""

    def close(self) -> None:
        """Release the expert."""

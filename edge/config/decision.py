"""Thresholds and reject rules that turn an anomaly map into OK/NG."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from edge.config.base import StrictModel

Verdict = Literal["OK", "NG"]


class ThresholdsConfig(StrictModel):
    """Score thresholds; `iad-edge calibrate` proposes both from good parts."""

    image_score: float = Field(0.35, ge=0.0, le=2.0, description="Image score at or above which a part is NG (cosine distance, 0..2).")
    pixel: float = Field(0.35, ge=0.0, le=2.0, description="Anomaly-map value at or above which a pixel belongs to a defect region.")


class RulesConfig(StrictModel):
    """Which regions reject a part."""

    min_area_px: int = Field(16, ge=0, description="A region smaller than this many pixels does not reject the part.")
    min_area_mm2: Optional[float] = Field(
        None, ge=0, description="Same as min_area_px in mm² (needs pixel_pitch_mm); both apply when both are given."
    )


class DecisionConfig(StrictModel):
    """Deadline and fail-safe behaviour of the real-time lane."""

    window_ms: int = Field(150, ge=1, le=60000, description="A decision later than this after the trigger is never delivered; the PLC rejects.")
    fail_safe: Verdict = Field("NG", description="Verdict published when the lane cannot decide in time or a stage fails.")

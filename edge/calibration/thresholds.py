"""Propose thresholds for a target false-reject rate, and measure what they do.

Image threshold: with N held-out good scores and a target false-reject rate
F, at most k = floor(F x N) good parts may be rejected; the threshold is put
just above the (k+1)-th highest good score, so exactly the k highest good
parts (at most F of them) score at or above it. A ``margin`` raises it by a
fraction for safety.

Pixel threshold: for each held-out good image, the lowest map value at which
no region of it would reject under the recipe's rules (min area px/mm²,
zones, always-reject defect types); the proposal is just above the highest of
those, so the region rule adds no false rejects on the held-out good parts.
Capped so that every zone's own ``pixel`` stays valid (zones may only be stricter).

Every verdict here is the lane's own rule, :func:`edge.verdict.decide`, on
regions extracted from the ROI map exactly as the inspector does (with their
pooled features when an always-reject rule needs the defect type, and the same
defect-type prototypes the lane will load): calibration cannot predict a
verdict the lane would not give.

Both values are rounded UP to 6 decimals, so what is written to the YAML file
is exactly what was evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.calibration.kfold import Scored
from edge.regions import extract_regions, with_features
from edge.types import Region
from edge.verdict import TypeMatcher, decide

DECIMALS = 6


def round_up(value: float) -> float:
    """Smallest 6-decimal number strictly above ``value`` (what the YAML file will hold)."""
    scale = 10**DECIMALS
    return (math.floor(value * scale) + 1) / scale


def image_threshold(good_scores: list[float], target_frr: float, margin: float = 0.0) -> tuple[float, int]:
    """(threshold, k): at most k = floor(target_frr x N) good scores reach the threshold."""
    ordered = sorted(good_scores, reverse=True)
    allowed = int(math.floor(target_frr * len(ordered) + 1e-9))
    allowed = min(allowed, len(ordered) - 1)
    base = ordered[allowed]
    return min(2.0, round_up(base * (1.0 + margin))), allowed


def at_thresholds(recipe: Any, image_score: float, pixel: float) -> Any:
    """A copy of ``recipe`` with these thresholds (the recipe the lane will run once they are written)."""
    return recipe.model_copy(update={"thresholds": recipe.thresholds.model_copy(
        update={"image_score": image_score, "pixel": pixel})})


def regions_at(item: Scored, pixel: float, recipe: Any) -> list[Region]:
    """The regions the inspector would report for this image at pixel threshold ``pixel`` (features pooled when kept)."""
    roi_map = item.roi_map
    regions = extract_regions(roi_map, pixel, item.roi_offset, recipe.pixel_pitch_mm)
    if regions and item.patch_features is not None:
        regions = with_features(regions, roi_map, pixel, item.roi_offset, item.patch_centers, item.patch_valid,
                                item.patch_features)
    return regions


def region_rejects(item: Scored, pixel: float, recipe: Any, prototypes: TypeMatcher | None = None) -> bool:
    """Would a region of this image reject the part at pixel threshold ``pixel``? (decide() with no score limit)"""
    return decide(item.score, regions_at(item, pixel, recipe), at_thresholds(recipe, math.inf, pixel),
                  prototypes).verdict == "NG"


def lowest_clean_pixel(item: Scored, recipe: Any, prototypes: TypeMatcher | None = None, iterations: int = 20) -> float:
    """Lowest pixel threshold (to ~1e-6 of the map range) at which no region of this image rejects."""
    high = float(item.roi_map.max())
    if high <= 0.0:
        return 0.0
    low = 0.0
    if not region_rejects(item, 1e-9, recipe, prototypes):
        return 0.0
    for _ in range(iterations):
        mid = (low + high) / 2.0
        if region_rejects(item, mid, recipe, prototypes):
            low = mid
        else:
            high = mid
    return high


@dataclass
class Proposal:
    """Proposed thresholds and what they do on the calibration images."""

    image_score: float
    pixel: float
    target_frr: float
    allowed_false_rejects: int
    good_count: int
    defect_count: int
    false_rejects: list[str] = field(default_factory=list)  # names of good parts rejected (held-out)
    misses: list[str] = field(default_factory=list)  # names of defects accepted
    per_type: dict[str, tuple[int, int]] = field(default_factory=dict)  # type -> (missed, total)
    pixel_capped_by: str | None = None  # zone that capped the pixel threshold
    auroc: float | None = None

    @property
    def frr(self) -> float:
        return len(self.false_rejects) / self.good_count if self.good_count else 0.0

    @property
    def miss_rate(self) -> float | None:
        return len(self.misses) / self.defect_count if self.defect_count else None


def auroc(good: list[float], bad: list[float]) -> float | None:
    """Image-level AUROC (probability a defect scores above a good part; ties count half)."""
    if not good or not bad:
        return None
    g = np.asarray(good)[:, None]
    b = np.asarray(bad)[None, :]
    return float(((b > g).sum() + 0.5 * (b == g).sum()) / (g.size * b.size))


def is_ng(item: Scored, image_score: float, pixel: float, recipe: Any, prototypes: TypeMatcher | None = None) -> bool:
    """The verdict the lane would give this image under these thresholds: :func:`edge.verdict.decide` itself."""
    return decide(item.score, regions_at(item, pixel, recipe), at_thresholds(recipe, image_score, pixel),
                  prototypes).verdict == "NG"


def propose(good: list[Scored], defects: list[Scored], recipe: Any, target_frr: float, margin: float = 0.0,
            prototypes: TypeMatcher | None = None) -> Proposal:
    """Thresholds for ``target_frr`` on the held-out good images, evaluated on good and defect images.

    ``prototypes``: the defect-type prototypes the lane will use with this recipe
    (only consulted by ``rules.always_reject``).
    """
    image_score, allowed = image_threshold([g.score for g in good], target_frr, margin)
    pixel = round_up(max(lowest_clean_pixel(g, recipe, prototypes) for g in good))
    capped_by = None
    for zone in recipe.rules.zones:
        if zone.pixel is not None and pixel > zone.pixel:
            pixel, capped_by = zone.pixel, zone.name
    pixel = min(pixel, 2.0)
    proposal = Proposal(image_score, pixel, target_frr, allowed, len(good), len(defects), pixel_capped_by=capped_by)
    proposal.false_rejects = [g.sample.name for g in good if is_ng(g, image_score, pixel, recipe, prototypes)]
    for item in defects:
        kind = item.sample.defect_type or "defect"
        missed, total = proposal.per_type.get(kind, (0, 0))
        accepted = not is_ng(item, image_score, pixel, recipe, prototypes)
        if accepted:
            proposal.misses.append(item.sample.name)
        proposal.per_type[kind] = (missed + int(accepted), total + 1)
    proposal.auroc = auroc([g.score for g in good], [d.score for d in defects])
    return proposal

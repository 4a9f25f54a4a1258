"""Held-out scores: every good image is scored against a bank built WITHOUT it.

Scoring a good image against a bank that contains its own patches gives a
distance of ~0 and a threshold that rejects half the line on day one. So the
good images are split into k folds (image i goes to fold i mod k, in name
order); each fold is scored against a bank of the other folds. Defect images
are scored against the full bank (they are never in it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.bank import Bank, build_bank
from edge.calibration.datasets import Sample
from edge.calibration.features import FeatureCachingExpert
from edge.inspector import Inspector
from edge.tiling import patch_centers, plan_tiles
from edge.words import count


@dataclass
class Scored:
    """One calibration image with its score, anomaly map (frame size) and what its regions need to be judged.

    Threshold proposals re-extract the regions at other pixel thresholds and
    judge them with the lane's own rule (:func:`edge.verdict.decide`); a region's
    defect type (``rules.always_reject``) comes from its pooled patch feature, so
    the patch features are kept when the recipe has such a rule (only then: they
    cost tiles x patches x D x 4 bytes per image).
    """

    sample: Sample
    score: float
    anomaly_map: np.ndarray
    fold: int | None = None  # fold of a held-out good image; None for defects
    roi_offset: tuple[int, int] = (0, 0)  # (x, y) of the ROI in the frame
    roi_shape: tuple[int, int] | None = None  # (H, W) of the ROI; None = the whole frame
    patch_features: np.ndarray | None = field(default=None, repr=False)  # [P, D], when always_reject needs them
    patch_centers: np.ndarray | None = field(default=None, repr=False)  # [P, 2] (y, x) in ROI pixels
    patch_valid: np.ndarray | None = field(default=None, repr=False)  # [P] centre inside the ROI

    @property
    def is_good(self) -> bool:
        return self.sample.defect_type is None

    @property
    def roi_map(self) -> np.ndarray:
        """The anomaly map of the ROI (what the lane extracts regions from)."""
        if self.roi_shape is None:
            return self.anomaly_map
        (x, y), (h, w) = self.roi_offset, self.roi_shape
        return self.anomaly_map[y : y + h, x : x + w]


def scoring_recipe(recipe: Any) -> Any:
    """The recipe for the inspectors that only score: no always-reject rule, so no prototypes are loaded.

    Scores, maps and patch features do not depend on the rules, and the
    prototypes may not exist yet (calibrate builds them); the verdicts are
    decided afterwards by :mod:`edge.calibration.thresholds` with the real rules.
    """
    if not recipe.rules.always_reject:
        return recipe
    return recipe.model_copy(update={"rules": recipe.rules.model_copy(update={"always_reject": []})})


def scored(sample: Sample, result: Any, recipe: Any, patch_size: int, fold: int | None = None) -> Scored:
    """A :class:`Scored` from an inspection result, keeping the patch features when the rules need them."""
    item = Scored(sample, float(result.score), result.anomaly_map, fold)
    if recipe.roi is not None:
        item.roi_offset, item.roi_shape = (recipe.roi.x, recipe.roi.y), (recipe.roi.height, recipe.roi.width)
    if recipe.rules.always_reject and result.patch_features is not None:
        roi_h, roi_w = item.roi_map.shape
        item.patch_centers, item.patch_valid = patch_centers(plan_tiles((roi_h, roi_w), recipe.tiling, patch_size))
        item.patch_features = result.patch_features.reshape(-1, result.patch_features.shape[-1])
    return item


def fold_of(index: int, folds: int) -> int:
    """Fold of the i-th good image (interleaved, so neighbours in time land in different folds)."""
    return index % folds


def score_held_out(
    expert: Any,
    cache: FeatureCachingExpert,
    good: list[Sample],
    recipe: Any,
    folds: int,
    progress: Callable[[str], Any] | None = None,
) -> list[Scored]:
    """Score each good image against a bank of the other folds (k = ``folds``, at most len(good))."""
    folds = max(2, min(folds, len(good)))
    out: list[Scored | None] = [None] * len(good)
    for fold in range(folds):
        train = [s.image for i, s in enumerate(good) if fold_of(i, folds) != fold]
        held = [(i, s) for i, s in enumerate(good) if fold_of(i, folds) == fold]
        bank = build_bank(cache, train, recipe, progress=False)
        inspector = Inspector(scoring_recipe(recipe), expert, bank)
        for index, sample in held:
            result = inspector.inspect(sample.image)
            out[index] = scored(sample, result, recipe, expert.patch_size, fold)
        if progress:
            progress(f"fold {fold + 1}/{folds}: {count(len(held), 'held-out good image')} scored against a bank of {len(train)}")
    return [s for s in out if s is not None]


def score_defects(expert: Any, bank: Bank, defects: list[Sample], recipe: Any,
                  progress: Callable[[str], Any] | None = None) -> list[Scored]:
    """Score defect images against the full bank (a progress line every ~10 % for long sets)."""
    inspector = Inspector(scoring_recipe(recipe), expert, bank)
    out = []
    step = max(1, len(defects) // 10)
    for number, sample in enumerate(defects, start=1):
        result = inspector.inspect(sample.image)
        out.append(scored(sample, result, recipe, expert.patch_size))
        if progress and (number % step == 0 or number == len(defects)):
            progress(f"defects: {number}/{len(defects)} scored against the full bank")
    return out

"""Held-out scores: every good image is scored against a bank built WITHOUT it.

Scoring a good image against a bank that contains its own patches gives a
distance of ~0 and a threshold that rejects half the line on day one. So the
good images are split into k folds (image i goes to fold i mod k, in name
order); each fold is scored against a bank of the other folds. Defect images
are scored against the full bank (they are never in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from edge.bank import Bank, build_bank
from edge.calibration.datasets import Sample
from edge.calibration.features import FeatureCachingExpert
from edge.inspector import Inspector
from edge.words import count


@dataclass
class Scored:
    """One calibration image with its score and anomaly map (frame size)."""

    sample: Sample
    score: float
    anomaly_map: np.ndarray
    fold: Optional[int] = None  # fold of a held-out good image; None for defects

    @property
    def is_good(self) -> bool:
        return self.sample.defect_type is None


def fold_of(index: int, folds: int) -> int:
    """Fold of the i-th good image (interleaved, so neighbours in time land in different folds)."""
    return index % folds


def score_held_out(
    expert: Any,
    cache: FeatureCachingExpert,
    good: list[Sample],
    recipe: Any,
    folds: int,
    progress: Optional[Callable[[str], Any]] = None,
) -> list[Scored]:
    """Score each good image against a bank of the other folds (k = ``folds``, at most len(good))."""
    folds = max(2, min(folds, len(good)))
    out: list[Optional[Scored]] = [None] * len(good)
    for fold in range(folds):
        train = [s.image for i, s in enumerate(good) if fold_of(i, folds) != fold]
        held = [(i, s) for i, s in enumerate(good) if fold_of(i, folds) == fold]
        bank = build_bank(cache, train, recipe, progress=False)
        inspector = Inspector(recipe, expert, bank)
        for index, sample in held:
            result = inspector.inspect(sample.image)
            out[index] = Scored(sample, float(result.score), result.anomaly_map, fold)
        if progress:
            progress(f"fold {fold + 1}/{folds}: {count(len(held), 'held-out good image')} scored against a bank of {len(train)}")
    return [s for s in out if s is not None]


def score_defects(expert: Any, bank: Bank, defects: list[Sample], recipe: Any,
                  progress: Optional[Callable[[str], Any]] = None) -> list[Scored]:
    """Score defect images against the full bank (a progress line every ~10 % for long sets)."""
    inspector = Inspector(recipe, expert, bank)
    out = []
    step = max(1, len(defects) // 10)
    for number, sample in enumerate(defects, start=1):
        result = inspector.inspect(sample.image)
        out.append(Scored(sample, float(result.score), result.anomaly_map))
        if progress and (number % step == 0 or number == len(defects)):
            progress(f"defects: {number}/{len(defects)} scored against the full bank")
    return out

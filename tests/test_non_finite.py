"""NaN/inf anywhere in the expert's output, the score or the map gives the fail-safe decision, counted.

The expert here is the real tiny DINOv2 on ONNX Runtime; a thin wrapper poisons
its outputs the way an overflowing FP16 engine would (a NaN or inf patch
distance, NaN features). Without the checks a NaN score compares false with the
threshold and the part passes. The end-to-end case with a real broker (what the
PLC and ``status`` see) is in tests/faults/test_faults_nonfinite.py.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

import numpy as np
import pytest

from edge.config import load_recipe
from edge.errors import NonFiniteError
from edge.inspector import Inspector
from edge.regions import extract_regions
from edge.scoring import image_score, smooth_map
from edge.sources.synthetic import SyntheticSource
from edge.station import build_lane
from tests.fixtures.expert import write_recipe

FRAMES = 6
POISONED = (1, 3, 4)  # expert calls (= frames, resize mode) whose output is poisoned


class PoisonedExpert:
    """The real expert, with one value of its output replaced on chosen calls."""

    def __init__(self, expert: Any, where: str, value: float, calls: tuple[int, ...]):
        self._expert, self.where, self.value, self.calls = expert, where, value, calls
        self.resolution, self.patch_size = expert.resolution, expert.patch_size
        self.feature_dim, self.manifest, self.providers = expert.feature_dim, expert.manifest, expert.providers
        self.count = 0

    def set_bank(self, bank: np.ndarray) -> None:
        self._expert.set_bank(bank)

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances, features = self._expert.run(tiles)
        if self.count in self.calls:
            distances, features = distances.copy(), features.copy()
            if self.where == "distances":
                distances[0, 3, 3] = self.value
            else:
                features[0, 2, 5, 7] = self.value
        self.count += 1
        return distances, features

    def close(self) -> None:
        self._expert.close()


def _lane(tmp_path, expert_dir, bank, where, value, **lane_kwargs):
    shutil.copy(bank, tmp_path / "bank.npz")
    # every part passes on clean output (high thresholds): a poisoned frame can only be NG by the fail-safe
    recipe = load_recipe(write_recipe(tmp_path, expert_dir, {"thresholds": {"image_score": 1.9, "pixel": 1.9},
                                                             "decision": {"window_ms": 10000, "fail_safe": "NG"}}))
    clean = Inspector.from_recipe(recipe)
    inspector = Inspector(recipe, PoisonedExpert(clean.expert, where, value, POISONED), clean.bank)
    lane = build_lane(recipe, inspector=inspector, source=SyntheticSource(recipe.source), **lane_kwargs)
    return recipe, lane


def test_poisoned_patch_feature_rejects_the_part(tmp_path, tiny_expert_dir, tiny_bank_path):
    """NaN in a feature only (distances finite, e.g. computed before the overflow) is caught too."""
    _, lane = _lane(tmp_path, tiny_expert_dir, tiny_bank_path, "features", math.nan, mqtt_enabled=False)
    decisions = []
    lane.add_observer(lambda frame, result, decision: decisions.append(decision))
    counters = lane.run(max_frames=FRAMES)
    assert counters["non_finite"] == len(POISONED)
    rejected = sorted(d.trigger_id for d in decisions if d.fail_safe)
    assert rejected == list(POISONED)
    assert all("expert patch features: 1 of" in d.reason for d in decisions if d.fail_safe)


def test_nan_score_never_passes():
    with pytest.raises(NonFiniteError, match="patch distances: 1 of 200 values are not finite \\(1 NaN, 0 inf\\)"):
        image_score(np.r_[np.zeros(199, np.float32), np.float32("nan")])


def test_nan_pixel_inside_a_region_does_not_remove_it_silently():
    """Today's blur spreads one NaN pixel over the whole region; the region must not just vanish."""
    amap = np.zeros((64, 64), np.float32)
    amap[20:40, 20:40] = 1.0
    amap[30, 30] = np.nan
    smoothed = smooth_map(amap)
    with pytest.raises(NonFiniteError, match="anomaly map"):
        extract_regions(smoothed, 0.5)

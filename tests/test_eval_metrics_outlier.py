"""Streamed pixel metrics survive one extreme pixel (checked against scikit-learn and the exact AUPRO).

With bins evenly spaced between the global minimum and maximum, one pixel far
above the rest squeezed every other pixel into the first bins: pixel AUROC 0.5
and AUPRO near 0 instead of about 0.99. ``eval`` now takes quantile bin edges.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve, roc_auc_score

from edge.evaluation.metrics import PixelMetrics, aupro_exact
from edge.evaluation.runner import pixel_sample


def _maps(seed: int, outlier: float):
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(8):
        mask = np.zeros((48, 64), bool)
        if i % 2:
            y, x = int(rng.integers(4, 36)), int(rng.integers(4, 50))
            mask[y : y + 8, x : x + 10] = True
        amap = rng.gamma(2.0, 0.02, mask.shape) + mask * rng.uniform(0.05, 0.3, mask.shape)
        masks.append(mask)
        maps.append(amap.astype(np.float32))
    maps[2][5, 7] = outlier  # one extreme pixel on a normal image (e.g. a saturated sensor pixel)
    return masks, maps


def _streamed(masks, maps):
    """As the runner does it: a sample of every map for the bin edges, then the maps streamed in."""
    total = sum(a.size for a in maps)
    metrics = PixelMetrics.from_sample(np.concatenate([pixel_sample(a, total) for a in maps]))
    for m, a in zip(masks, maps):
        metrics.add(m if m.any() else None, a)
    return metrics.result()


@pytest.mark.parametrize("outlier", [1e4, 3.0e38], ids=["1e4", "float32-max"])
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_pixel_metrics_with_one_extreme_pixel_match_the_exact_ones(seed, outlier):
    masks, maps = _maps(seed, outlier)
    y = np.concatenate([m.ravel() for m in masks]).astype(int)
    s = np.concatenate([a.ravel() for a in maps]).astype(np.float64)
    precision, recall, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    got = _streamed(masks, maps)
    assert got.pixel_auroc == pytest.approx(roc_auc_score(y, s), abs=1e-3)
    assert got.pixel_f1_max == pytest.approx(f1.max(), abs=1e-3)
    assert got.aupro == pytest.approx(aupro_exact(masks, maps), abs=1e-3)
    assert got.pixel_auroc > 0.9 and got.aupro > 0.5  # far from the collapsed 0.5 / ~0


def test_evenly_spaced_bins_still_collapse_on_an_outlier():
    """Why the runner no longer uses them (kept for callers that know their range)."""
    masks, maps = _maps(0, 1e4)
    lo, hi = min(float(a.min()) for a in maps), max(float(a.max()) for a in maps)
    even = PixelMetrics(lo, hi)
    for m, a in zip(masks, maps):
        even.add(m if m.any() else None, a)
    assert even.result().pixel_auroc < 0.6


def test_pixel_sample_keeps_each_maps_extremes_and_is_bounded():
    amap = np.arange(1000, dtype=np.float32).reshape(10, 100)
    sample = pixel_sample(amap, total_pixels=10**9)  # a huge set: only a few values of this map
    assert sample.min() == 0.0 and sample.max() == 999.0 and sample.size < 50
    assert pixel_sample(amap, total_pixels=1000).size >= 1000  # a small set is taken whole

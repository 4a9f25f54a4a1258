"""Metric implementations against scikit-learn and hand-computed MVTec PRO cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve, roc_auc_score

from edge.evaluation.metrics import (
    PixelMetrics,
    aupro_exact,
    auroc,
    f1_max,
    pixel_metrics_exact,
    pro_curve_exact,
    trapezoid_limited,
)


def _sk_f1_max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)
    return f1.max()


@pytest.mark.parametrize("seed", range(6))
def test_eval_auroc_and_f1_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    # Rounded scores create many ties, which is where hand-written AUROCs usually go wrong.
    s = np.round(rng.normal(size=n) + y * rng.uniform(0, 2), int(rng.integers(0, 3)))
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert f1_max(y, s)[0] == pytest.approx(_sk_f1_max(y, s), abs=1e-12)


def test_eval_auroc_extremes_and_bad_input():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5
    f1, thr = f1_max([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    assert (f1, thr) == (1.0, 0.3)
    with pytest.raises(ValueError, match="both normal and anomalous"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        auroc([0, 1], [0.1])


def test_eval_pro_perfect_and_constant_maps():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    assert aupro_exact([mask], [mask.astype(np.float32)]) == pytest.approx(1.0)
    # Every pixel tied: the curve is the diagonal, area 0.3²/2 over 0.3.
    assert aupro_exact([mask], [np.ones((6, 6), np.float32)]) == pytest.approx(0.15)


def test_eval_pro_weights_each_region_equally():
    """Two regions (2 px and 1 px) and 7 normal pixels, worked out by hand.

    Thresholds 0.9 / 0.7 / 0.5 / 0.3 / 0.1 give the curve (0,0) (0,.25) (1/7,.25)
    (1/7,.5) (1/7,1) (1,1): area to 0.3 = .25/7 + (.3 - 1/7) → AUPRO = 9/14.
    Pixel recall would weight the big region double; PRO does not.
    """
    mask = np.array([[1, 1, 0, 0, 0, 1, 0, 0, 0, 0]], bool)
    amap = np.array([[0.9, 0.5, 0.7, 0.1, 0.1, 0.3, 0.1, 0.1, 0.1, 0.1]], np.float32)
    fpr, pro = pro_curve_exact([mask], [amap])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 7, 1 / 7, 1 / 7, 1, 1])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.5, 1, 1, 1])
    assert aupro_exact([mask], [amap]) == pytest.approx(9 / 14)
    streamed = PixelMetrics(0.1, 0.9)
    streamed.add(mask, amap)
    assert streamed.result().aupro == pytest.approx(9 / 14, abs=1e-3)


def test_eval_pro_interpolates_at_the_limit_and_counts_normal_images():
    """Region of 2 px (0.8, 0.5); normal pixels 0.5 + three 0.1 in a second, defect-free image.

    Curve (0,0) (0,.5) (.25,1) (1,1): area to 0.3 = .1875 + .05 → AUPRO = 19/24.
    The FPR denominator includes the normal pixels of the normal image.
    """
    masks = [np.array([[1, 1]], bool), np.zeros((2, 2), bool)]
    maps = [np.array([[0.8, 0.5]], np.float32), np.array([[0.5, 0.1], [0.1, 0.1]], np.float32)]
    assert aupro_exact(masks, maps) == pytest.approx(19 / 24)
    streamed = PixelMetrics(0.1, 0.8)
    for m, a in zip(masks, maps):
        streamed.add(m, a)
    assert streamed.result().aupro == pytest.approx(19 / 24, abs=1e-3)


def test_eval_trapezoid_limited_matches_plain_area_when_limit_is_a_point():
    x = np.array([0.0, 0.1, 0.3, 1.0])
    y = np.array([0.0, 0.5, 0.7, 1.0])
    assert trapezoid_limited(x, y, 0.3) == pytest.approx(0.5 * 0.5 * 0.1 + 0.5 * (0.5 + 0.7) * 0.2)
    with pytest.raises(ValueError, match="outside"):
        trapezoid_limited(np.array([0.0, 0.2]), np.array([0.0, 1.0]), 0.3)


def test_eval_diagonal_regions_are_one_component():
    """MVTec uses 8-connectivity: diagonal neighbours form a single region."""
    mask = np.eye(3, dtype=bool)
    amap = np.array([[1.0, 0, 0], [0, 0.0, 0], [0, 0, 0.0]], np.float32)
    # One region of 3 px: at the top threshold its overlap is 1/3 (two regions would give more).
    fpr, pro = pro_curve_exact([mask], [amap])
    assert pro[1] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(3))
def test_eval_binned_pixel_metrics_stay_close_to_exact(seed):
    """The memory-bounded histogram path used by `eval` is within 1e-3 of the exact values."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(6):
        h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        mask = np.zeros((h, w), bool)
        if i % 3:
            for _ in range(int(rng.integers(1, 4))):
                y0, x0 = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
                mask[y0 : y0 + int(rng.integers(2, 8)), x0 : x0 + int(rng.integers(2, 8))] = True
        amap = rng.gamma(2.0, 0.01, (h, w)) + mask * rng.uniform(0.0, 0.05, (h, w))
        masks.append(mask)
        maps.append(amap.astype(np.float32))
    exact = pixel_metrics_exact(masks, maps)
    lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    streamed = PixelMetrics(lo, hi)
    for m, a in zip(masks, maps):
        streamed.add(m if m.any() else None, a)
    got = streamed.result()
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([a.ravel() for a in maps])
    assert exact.pixel_auroc == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert got.pixel_auroc == pytest.approx(exact.pixel_auroc, abs=1e-3)
    assert got.pixel_f1_max == pytest.approx(exact.pixel_f1_max, abs=1e-3)
    assert got.aupro == pytest.approx(exact.aupro, abs=1e-3)
    assert 0.0 < got.aupro < 1.0


def test_eval_pixel_metrics_reject_mismatched_shapes():
    acc = PixelMetrics(0.0, 1.0)
    with pytest.raises(ValueError, match="differs from anomaly map shape"):
        acc.add(np.zeros((4, 4), bool), np.zeros((4, 5), np.float32))

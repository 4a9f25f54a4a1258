"""AnomalyDINO scoring: image score from patch distances, smoothed anomaly map.

Kept as small pure functions so they can be checked against hand-computed cases.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.errors import NonFiniteError

MAP_SIGMA_PX = 4.0
TOP_FRACTION = 0.01


def require_finite(values: np.ndarray, what: str) -> None:
    """Raise :class:`NonFiniteError` when ``values`` holds NaN or infinity.

    Why: a NaN compares false with every threshold, so one NaN patch distance
    would make the image score NaN and the part pass (``nan >= t`` is false),
    and a NaN pixel spreads through the blur and removes the region around it.
    One float64 ``sum`` is a cheap test (NaN and ±inf propagate, and no finite
    float32 array can overflow a float64 sum); the exact count is only made on failure.
    """
    arr = np.asarray(values)
    if arr.size and not np.isfinite(arr.sum(dtype=np.float64)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        nan = int(np.count_nonzero(np.isnan(arr)))
        raise NonFiniteError(f"{what}: {bad} of {arr.size} values are not finite ({nan} NaN, {bad - nan} inf)")


def image_score(patch_distances: np.ndarray) -> float:
    """Mean of the top 1 % patch distances; the maximum when there are fewer than 100 patches.

    For n ≥ 100 patches the mean is over ``int(n * 0.01)`` values, as in the
    AnomalyDINO reference implementation.
    """
    flat = np.asarray(patch_distances, dtype=np.float32).ravel()
    if flat.size == 0:
        raise ValueError("no patch distances to score")
    require_finite(flat, "patch distances")
    if flat.size < 100:
        return float(flat.max())
    k = int(flat.size * TOP_FRACTION)
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())


def smooth_map(anomaly_map: np.ndarray, sigma: float = MAP_SIGMA_PX) -> np.ndarray:
    """Gaussian blur with σ = 4 px, kernel radius 4σ and mirrored borders.

    Matches ``scipy.ndimage.gaussian_filter(x, sigma=4)`` (mode 'reflect',
    truncate 4.0) used by AnomalyDINO, without needing scipy at run time.
    """
    radius = int(4.0 * sigma + 0.5)
    ksize = 2 * radius + 1
    return cv2.GaussianBlur(
        anomaly_map.astype(np.float32, copy=False), (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )

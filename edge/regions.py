"""Regions: connected components of the thresholded anomaly map.

A region is what the rest of the product talks about: the verdict rules, the
PLC result, the archive overlay and the assistant's grounded explanation.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from edge.scoring import require_finite
from edge.types import Region

_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "center", "right")
MAX_REGIONS = 64  # a noisy map must not flood the PLC result; the strongest regions are kept


def location_name(cx: float, cy: float, width: int, height: int) -> str:
    """3×3 location of a point: 'top-left', 'top', 'top-right', 'left', 'center', 'right', 'bottom-left', 'bottom', 'bottom-right'."""
    col = _COLS[min(2, max(0, int(3 * cx / max(width, 1))))]
    row = _ROWS[min(2, max(0, int(3 * cy / max(height, 1))))]
    if row == "middle":
        return "center" if col == "center" else col
    return row if col == "center" else f"{row}-{col}"


def extract_regions(
    anomaly_map: np.ndarray,
    pixel_threshold: float,
    offset: tuple[int, int] = (0, 0),
    pixel_pitch_mm: float | None = None,
) -> list[Region]:
    """Connected components (8-connected) of ``anomaly_map >= pixel_threshold``, strongest first.

    ``anomaly_map`` covers the ROI; ``offset`` = (x, y) of the ROI in the
    frame, so bboxes and centroids come out in original frame pixels. The
    3×3 location is relative to the ROI (the inspected part).
    """
    require_finite(anomaly_map, "anomaly map")  # a NaN pixel is below every threshold: its region would vanish
    height, width = anomaly_map.shape
    binary = (anomaly_map >= pixel_threshold).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return []
    ox, oy = offset
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        window = anomaly_map[y : y + h, x : x + w]
        values = window[labels[y : y + h, x : x + w] == label]
        cx, cy = (float(v) for v in centroids[label])
        regions.append(
            Region(
                bbox=[x + ox, y + oy, x + w + ox, y + h + oy],
                area_px=area,
                centroid=[cx + ox, cy + oy],
                peak=float(values.max()),
                mean=float(values.mean()),
                location=location_name(cx, cy, width, height),
                area_mm2=area * pixel_pitch_mm**2 if pixel_pitch_mm else None,
            )
        )
    regions.sort(key=lambda r: r.peak, reverse=True)
    return regions[:MAX_REGIONS]


def region_mask(region: Region, roi_shape: tuple[int, int], anomaly_map: np.ndarray, pixel_threshold: float,
                offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Boolean ROI-sized mask of one region (the thresholded pixels inside its bbox)."""
    ox, oy = offset
    x0, y0, x1, y1 = region.bbox
    mask = np.zeros(roi_shape, dtype=bool)
    mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox] = anomaly_map[y0 - oy : y1 - oy, x0 - ox : x1 - ox] >= pixel_threshold
    return mask


def pool_region_feature(mask: np.ndarray, centers: np.ndarray, valid: np.ndarray, features: np.ndarray,
                        peak_yx: tuple[int, int]) -> np.ndarray:
    """Mean of the patch features whose centre lies in ``mask`` (L2-normalised).

    A region smaller than a patch may contain no patch centre: then the patch
    nearest to the region's peak pixel stands for it.
    """
    ys = np.clip(centers[:, 0].astype(np.int64), 0, mask.shape[0] - 1)
    xs = np.clip(centers[:, 1].astype(np.int64), 0, mask.shape[1] - 1)
    inside = valid & mask[ys, xs]
    if inside.any():
        pooled = features[inside].mean(axis=0)
    else:
        d2 = (centers[:, 0] - peak_yx[0]) ** 2 + (centers[:, 1] - peak_yx[1]) ** 2
        d2 = np.where(valid, d2, np.inf)
        pooled = features[int(np.argmin(d2))]
    norm = float(np.linalg.norm(pooled))
    unit: np.ndarray = (pooled / norm if norm > 0 else pooled).astype(np.float32)
    return unit


def with_features(regions: list[Region], roi_map: np.ndarray, pixel_threshold: float, offset: tuple[int, int],
                  centers: np.ndarray, valid: np.ndarray, features: np.ndarray) -> list[Region]:
    """Copies of ``regions`` carrying their pooled patch feature (:func:`pool_region_feature`).

    ``roi_map`` is the ROI's anomaly map, ``offset`` the ROI's (x, y) in the frame,
    ``centers``/``valid`` the ROI-pixel centres of the patches (``edge.tiling.patch_centers``)
    and ``features`` their [P, D] features in the same order.
    """
    ox, oy = offset
    out = []
    for region in regions:
        mask = region_mask(region, roi_map.shape, roi_map, pixel_threshold, offset)
        x0, y0, x1, y1 = region.bbox
        window = np.where(mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox], roi_map[y0 - oy : y1 - oy, x0 - ox : x1 - ox], -np.inf)
        py, px = np.unravel_index(int(np.argmax(window)), window.shape)
        peak_yx = (int(py) + y0 - oy, int(px) + x0 - ox)
        out.append(dataclasses.replace(region, feature=pool_region_feature(mask, centers, valid, features, peak_yx)))
    return out

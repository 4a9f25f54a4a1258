"""The region evidence the projector reads: the pixel blob and the grid-line distances say where the defect is,
even when the expert's region box reaches into something every good part has, or sits a patch off."""

from __future__ import annotations

import numpy as np
import pytest

from edge.assistant.projector import (
    GRID_SLOPE,
    N_BLOB,
    N_FOURIER,
    N_GEOMETRY,
    N_GRID,
    N_INTENSITY,
    N_SCORES,
    evidence_vector,
)
from edge.evaluation.understanding import shifted_region
from edge.regions import location_name
from edge.types import Region

BLOB = N_GEOMETRY + N_FOURIER + N_GRID + N_SCORES + N_INTENSITY  # first entry of the blob block
FRAME = 448


def _plate_with_hole_and_scratch() -> tuple[np.ndarray, Region]:
    """A mid-grey plate with a big dark machined hole (a good feature) and a thin bright scratch left of the x = 1/3
    grid line; the expert's region box covers both (as a box a patch too wide does)."""
    img = np.full((FRAME, FRAME, 3), 140, np.uint8)
    img[200:260, 160:220] = 20  # the hole: 3600 px, far larger than the scratch
    img[180:260, 138:141] = 250  # the scratch: 240 px, centred at x = 139 (< 149.3: "left")
    region = Region(bbox=[120, 170, 230, 270], area_px=900, centroid=[142.0, 220.0], peak=0.3, mean=0.2, location="left")
    return img, region


def test_the_blob_is_the_deviating_set_nearest_the_region_not_the_largest() -> None:
    img, region = _plate_with_hole_and_scratch()
    v = evidence_vector(region, (0, 0, FRAME, FRAME), None, 8, 0.1, img)
    assert v[BLOB + N_BLOB - 1] == 1.0  # found
    cx, cy = v[BLOB] * FRAME, v[BLOB + 1] * FRAME
    assert abs(cx - 139) < 1.5 and abs(cy - 219.5) < 1.5  # the scratch (the largest set would be the hole at 189, 229)
    assert location_name(cx, cy, FRAME, FRAME) == "left"


def test_specks_are_not_candidates_for_the_blob() -> None:
    img, region = _plate_with_hole_and_scratch()
    img[220, 142] = 255  # one noisy pixel right at the region's centroid
    v = evidence_vector(region, (0, 0, FRAME, FRAME), None, 8, 0.1, img)
    assert abs(v[BLOB] * FRAME - 139) < 1.5


@pytest.mark.parametrize("offset_px", [2, 4])
def test_grid_distances_tell_the_side_of_a_line_a_few_pixels_away(offset_px: int) -> None:
    """A centroid a few pixels either side of the x = 1/3 line gives clearly different, opposite-signed values."""
    line = FRAME / 3
    values = []
    for x in (line - offset_px, line + offset_px):
        region = Region(bbox=[int(x) - 5, 100, int(x) + 5, 110], area_px=100, centroid=[x, 105.0], peak=0.3, mean=0.2,
                        location=location_name(x, 105.0, FRAME, FRAME))
        v = evidence_vector(region, (0, 0, FRAME, FRAME), None, 8, 0.1, None)
        values.append(float(v[N_GEOMETRY + N_FOURIER]))  # the region centroid's distance to the x = 1/3 line
    left, right = values
    assert left < 0 < right
    assert min(-left, right) >= np.tanh(GRID_SLOPE * 3 * offset_px / FRAME) - 1e-3 >= 0.4


def test_shifted_regions_move_like_the_experts_and_keep_the_truth() -> None:
    truth = Region(bbox=[200, 200, 240, 230], area_px=600, centroid=[220.0, 215.0], peak=0.4, mean=0.2, location="center")
    rng = np.random.default_rng(0)
    moved = [shifted_region(truth, 28.0, (FRAME, FRAME), rng) for _ in range(200)]
    x0s = np.array([m.bbox[0] for m in moved])
    x1s = np.array([m.bbox[2] for m in moved])
    assert x0s.min() >= 200 - 28 and x0s.max() <= 200 + 7 and x1s.max() <= 240 + 28
    assert len(set(map(tuple, (m.bbox for m in moved)))) > 150  # really varied
    offsets = np.array([np.subtract(m.centroid, truth.centroid) for m in moved])
    assert np.abs(offsets).max() <= 0.6 * 28 + 1e-6 and offsets.std() > 5
    assert all(m.location == "center" and m.peak == truth.peak and m.area_px >= truth.area_px for m in moved)
    again = [shifted_region(truth, 28.0, (FRAME, FRAME), np.random.default_rng(0)) for _ in range(1)]
    assert again[0].bbox == moved[0].bbox  # deterministic per seed

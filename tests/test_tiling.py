"""Tile plans and the patch-grid alignment of stitched maps."""

import numpy as np
import pytest

from edge.config.expert import TilingConfig
from edge.tiling import cut_tiles, patch_centers, plan_tiles, stitch_distances


def _peak(m: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(m)), m.shape))


def test_tile_mode_covers_a_wide_frame_with_overlap():
    plan = plan_tiles((112, 500), TilingConfig(mode="tile", resolution=112, overlap=0.25))
    xs = sorted({x for _, x in plan.origins})
    assert xs[0] == 0 and xs[-1] == 500 - 112
    assert all(b - a <= 84 for a, b in zip(xs, xs[1:]))  # stride <= 112 * 0.75
    assert {y for y, _ in plan.origins} == {0}


def test_cut_tiles_takes_the_right_pixels():
    roi = np.zeros((112, 336, 3), dtype=np.uint8)
    roi[:, 112:224] = 200  # the middle tile only
    plan = plan_tiles(roi.shape[:2], TilingConfig(mode="tile", resolution=112, overlap=0.0))
    tiles = cut_tiles(roi, plan)
    assert tiles.shape == (3, 112, 112, 3)
    assert [int(t.mean()) for t in tiles] == [0, 200, 0]


@pytest.mark.parametrize("tile_index,patch", [(0, (1, 6)), (1, (5, 2)), (2, (7, 7))])
def test_a_hot_patch_lights_up_its_own_place_in_the_full_map(tile_index, patch):
    """Tile mode, 3 tiles side by side: patch (i, j) of tile t must peak at x = 112 t + 14 j + 7, y = 14 i + 7."""
    plan = plan_tiles((112, 336), TilingConfig(mode="tile", resolution=112, overlap=0.0))
    distances = np.zeros((3, 8, 8), dtype=np.float32)
    distances[tile_index, patch[0], patch[1]] = 1.0
    full = stitch_distances(distances, plan)
    assert full.shape == (112, 336)
    y, x = _peak(full)
    ey, ex = 14 * patch[0] + 7, 112 * tile_index + 14 * patch[1] + 7
    assert abs(y - ey) <= 7 and abs(x - ex) <= 7
    # a transposed grid would light (14 j + 7, 14 i + 7): make sure the test can tell
    if patch[0] != patch[1]:
        assert abs(y - (14 * patch[1] + 7)) > 7 or abs(x - (112 * tile_index + 14 * patch[0] + 7)) > 7


def test_resize_mode_maps_a_patch_back_to_its_place_in_a_non_square_roi():
    plan = plan_tiles((300, 150), TilingConfig(mode="resize", resolution=112))
    distances = np.zeros((1, 8, 8), dtype=np.float32)
    distances[0, 6, 1] = 1.0  # lower left
    full = stitch_distances(distances, plan)
    assert full.shape == (300, 150)
    y, x = _peak(full)
    assert abs(y - (6.5 * 300 / 8)) <= 300 / 16 and abs(x - (1.5 * 150 / 8)) <= 150 / 16


def test_small_frames_are_padded_and_cropped_back():
    plan = plan_tiles((50, 70), TilingConfig(mode="tile", resolution=112))
    roi = np.full((50, 70, 3), 7, dtype=np.uint8)
    tiles = cut_tiles(roi, plan)
    assert tiles.shape == (1, 112, 112, 3) and (tiles == 7).all()
    assert stitch_distances(np.ones((1, 8, 8), np.float32), plan).shape == (50, 70)
    centers, valid = patch_centers(plan)
    assert valid.sum() == 4 * 5  # patch centres at 7, 21, 35, 49 (y < 50) and 7..63 (x < 70)


def test_overlapping_tiles_are_averaged():
    plan = plan_tiles((112, 168), TilingConfig(mode="tile", resolution=112, overlap=0.5))
    assert len(plan.origins) == 2
    distances = np.stack([np.full((8, 8), 1.0), np.full((8, 8), 3.0)]).astype(np.float32)
    full = stitch_distances(distances, plan)
    assert full[50, 10] == pytest.approx(1.0) and full[50, 160] == pytest.approx(3.0)
    assert full[50, 80] == pytest.approx(2.0)  # overlap region: mean of both tiles

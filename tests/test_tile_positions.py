"""Tile mode scores every place of the ROI once: a defect in a tile overlap is not counted twice.

The real tiny DINOv2 on ONNX Runtime sees a line-scan-like strip (112 x 1120 px,
13 overlapping 112 px tiles) whose texture repeats every 28 px, so every tile
sees the same good scene; the same dark defect is pasted inside tile 0 only,
inside the overlap of tiles 0 and 1, and inside tile 1 only.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.bank import build_bank
from edge.config import load_recipe
from edge.config.expert import TilingConfig
from edge.expert import load_expert
from edge.inspector import Inspector
from edge.tiling import patch_centers, patch_positions, plan_tiles
from tests.fixtures.expert import TINY_RESOLUTION, write_recipe

H, W = 112, 1120
DEFECT = 20  # px


def _scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    period = rng.integers(90, 170, (H, 28, 3)).astype(np.uint8)  # 28 px divides the 84 px tile stride
    return np.ascontiguousarray(np.tile(period, (1, W // 28, 1)))


def _with_defect(x: int) -> np.ndarray:
    image = _scene().copy()
    image[46 : 46 + DEFECT, x : x + DEFECT] = 20
    return image


@pytest.fixture(scope="module")
def strip_inspector(tiny_expert_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("strip")
    recipe = load_recipe(write_recipe(folder, tiny_expert_dir, {
        "source": {"type": "synthetic", "width": W, "height": H, "channels": 3},
        "tiling": {"mode": "tile", "resolution": TINY_RESOLUTION, "overlap": 0.25},
        "thresholds": {"image_score": 1.9, "pixel": 1.9}}))
    expert = load_expert(recipe.expert)
    bank = build_bank(expert, [_scene()], recipe, progress=False)
    return Inspector(recipe, expert, bank)


def test_same_defect_across_a_tile_seam_scores_within_5_percent(strip_inspector):
    plan = plan_tiles((H, W), strip_inspector.recipe.tiling, 14)
    assert [x for _, x in plan.origins[:3]] == [0, 84, 168]  # overlap of tiles 0 and 1: x in [84, 112)
    # shifts by whole patches (14 px), so the defect always covers the patch lattice the same way: moving it by
    # a fraction of a patch changes how many patches it touches, which is not what this test is about
    xs = list(range(40, 139, 14))  # 40 (tile 0 only) ... 82, 96 (in the overlap) ... 124, 138 (tile 1 only)
    scores = {x: strip_inspector.inspect(_with_defect(x)).score for x in xs}
    good = strip_inspector.inspect(_scene()).score
    assert min(scores.values()) > 1.5 * good  # the defect is what sets the score
    spread = max(scores.values()) / min(scores.values()) - 1.0
    # counting the overlap patches twice made the defects in the overlap score 50 % higher or more
    assert spread <= 0.05, scores


def test_unique_positions_of_the_issue_example():
    """600 x 1400 ROI at R = 224, overlap 0.25: 8192 tile patches cover 43 x 100 = 4300 places."""
    plan = plan_tiles((600, 1400), TilingConfig(mode="tile", resolution=224, overlap=0.25), 14)
    positions = patch_positions(plan)
    _, valid = patch_centers(plan)
    assert plan.num_tiles * 256 == 8192 and int(valid.sum()) == 8192
    assert positions.count == 4300 and positions.shape == (43, 100)
    assert int(positions.counts.sum()) == 8192 and set(positions.counts.tolist()) == {1, 2, 4}
    values = np.arange(8192, dtype=np.float32)
    per = positions.per_position(values)
    # the mean of each place equals the mean over the patches whose centre lies there
    cell = positions.cell
    for p in (0, 17, 4299):
        assert per[p] == pytest.approx(values[cell == positions.occupied[p]].mean())
    assert positions.to_patches(per).shape == (8192,)


def test_resize_mode_positions_are_the_patches():
    plan = plan_tiles((300, 500), TilingConfig(mode="resize", resolution=224), 14)
    positions = patch_positions(plan)
    assert positions.identity and positions.count == 256
    values = np.random.default_rng(0).random(256).astype(np.float32)
    assert positions.per_position(values) is values

"""The foreground mask (AnomalyDINO's, per image): background dust is ignored, a defect on the part never is.

Real parts: the tiny DINOv2 on ONNX Runtime and the synthetic machined plate on
a dark fixture (a plain background ring of 10 % of the frame), inspected in
tile mode so the mask has a fine patch lattice (32 x 32 positions).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.bank import build_bank
from edge.config import load_recipe
from edge.expert import load_expert
from edge.foreground import foreground_positions
from edge.imageio import to_rgb8
from edge.inspector import Inspector
from edge.tiling import TilePlan, patch_positions, plan_tiles
from tests.fixtures.expert import TINY_RESOLUTION, synthetic_frames, write_recipe

S = 448


def _recipe(folder, expert_dir, mask: bool):
    return load_recipe(write_recipe(folder, expert_dir, {
        "source": {"type": "synthetic", "width": S, "height": S, "channels": 3},
        "tiling": {"mode": "tile", "resolution": TINY_RESOLUTION, "overlap": 0.25},
        "bank": {"path": "bank.npz", "foreground_mask": mask},
        "thresholds": {"image_score": 1.9, "pixel": 0.2}}, name=f"mask-{mask}.yaml"))


@pytest.fixture(scope="module")
def inspectors(tiny_expert_dir, tmp_path_factory):
    """{mask on/off: (inspector, bank)} built from the same 4 good plates."""
    folder = tmp_path_factory.mktemp("fg")
    goods = [f.image for f in synthetic_frames(4, defect=None, width=S, height=S, start=100)]
    out = {}
    for mask in (False, True):
        recipe = _recipe(folder, tiny_expert_dir, mask)
        expert = load_expert(recipe.expert)
        bank = build_bank(expert, goods, recipe, progress=False)
        out[mask] = (Inspector(recipe, expert, bank), bank)
    return out


def test_reference_images_are_not_masked(inspectors):
    """As AnomalyDINO by default: the bank keeps every patch of the good images, mask or not."""
    plan = plan_tiles((S, S), inspectors[True][0].recipe.tiling, 14)
    every_patch = 4 * plan.num_tiles * plan.grid * plan.grid
    assert inspectors[True][1].size == inspectors[False][1].size == every_patch


@pytest.mark.parametrize("index", [0, 1, 2])
def test_missing_material_showing_the_background_is_never_masked_away(inspectors, index):
    """A piece of the plate is missing, so the dark fixture shows through: it looks like background, but it lies
    on the part. The mask must keep it (dilation and closing fill such holes): the anomaly inside the defect is
    what it is without the mask."""
    frame = synthetic_frames(1, defect="missing", width=S, height=S, start=index, seed=11)[0]
    truth = frame.ground_truth
    unmasked = inspectors[False][0].inspect(frame.image)
    masked = inspectors[True][0].inspect(frame.image)
    assert masked.anomaly_map[truth].max() >= 0.95 * unmasked.anomaly_map[truth].max()
    assert masked.score >= 0.95 * unmasked.score
    # and the mask itself holds every position the defect covers
    inspector = inspectors[True][0]
    plan = plan_tiles((S, S), inspector.recipe.tiling, 14)
    on_part = _mask_grid(inspector, frame.image, plan)
    ys, xs = np.nonzero(truth)
    assert on_part[ys // 14, xs // 14].all()


def test_dust_on_the_background_is_ignored_but_not_on_the_part(inspectors):
    frame = synthetic_frames(1, defect=None, width=S, height=S, start=7, seed=11)[0]
    dusty = frame.image.copy()
    dusty[200:212, 6:18] = 250  # a bright speck on the dark fixture, left of the plate
    unmasked = inspectors[False][0].inspect(dusty)
    masked = inspectors[True][0].inspect(dusty)
    speck = (slice(200, 212), slice(6, 18))
    assert unmasked.anomaly_map[speck].max() > 0.2 and any(r.bbox[0] < 30 for r in unmasked.regions)
    assert masked.anomaly_map[speck].max() < 0.05 and not any(r.bbox[0] < 30 for r in masked.regions)
    on_plate = frame.image.copy()
    on_plate[200:212, 200:212] = 250  # the same speck on the part is kept as it is
    kept = [inspectors[m][0].inspect(on_plate).anomaly_map[200:212, 200:212].max() for m in (False, True)]
    assert kept[1] == pytest.approx(kept[0], rel=1e-6) and kept[1] > 0.1


def _mask_grid(inspector: Inspector, image: np.ndarray, plan: TilePlan) -> np.ndarray:
    from edge.bank import run_batched
    from edge.tiling import cut_tiles

    _, features = run_batched(inspector.expert, cut_tiles(to_rgb8(image), plan), 16)
    positions = patch_positions(plan)
    keep = foreground_positions(positions.per_position(features.reshape(-1, features.shape[-1])), positions)
    grid = np.zeros(positions.shape[0] * positions.shape[1], bool)
    grid[positions.occupied] = keep
    return grid.reshape(positions.shape)


def test_mask_rules_on_a_hand_made_feature_grid():
    """Per-image PCA, sign from the centre crop, dilation + closing: checked without a model."""
    rows = cols = 20
    plan = plan_tiles((rows * 14, cols * 14), _tiling(rows * 14), 14)
    positions = patch_positions(plan)
    assert positions.shape == (rows, cols)
    rng = np.random.default_rng(0)
    part, background = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    grid = np.zeros((rows, cols), bool)
    grid[4:16, 4:16] = True  # the part, in the middle
    hole = (9, 9)  # one position of the part that looks exactly like the background
    for flip in (False, True):  # PCA's sign is arbitrary: the centre crop decides
        a, b = (background, part) if flip else (part, background)
        feats = np.where(grid.reshape(-1, 1), a, b) + 0.01 * rng.standard_normal((rows * cols, 8)).astype(np.float32)
        feats[hole[0] * cols + hole[1]] = b
        keep = foreground_positions(feats, positions).reshape(rows, cols)
        assert keep[hole], "a hole in the part is filled"
        assert keep[3:17, 3:17].all(), "the part, grown by one position, is kept"
        assert not keep[:2].any() and not keep[:, :2].any() and not keep[18:].any() and not keep[:, 18:].any()


def _tiling(size: int):
    from edge.config.expert import TilingConfig

    return TilingConfig(mode="resize", resolution=size)

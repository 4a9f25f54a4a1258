"""Report pictures a person can read: labelled, with a colour scale, sized for tall and wide parts, no colour clash."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.overlay import BANNER_COLOUR, NG_COLOUR, OK_COLOUR, REGION_COLOUR, render_overlay
from edge.types import Region
from tests.fixtures.expert import synthetic_frames, write_recipe

GROUND_TRUTH_GREEN = (0, 255, 0)  # BGR of the ground-truth outline in eval's worst-case grid


def _region(bbox, rejects=True):
    x0, y0, x1, y1 = bbox
    region = Region(bbox=list(bbox), area_px=(x1 - x0) * (y1 - y0), centroid=[(x0 + x1) / 2, (y0 + y1) / 2], peak=0.8,
                    mean=0.5, location="center")
    region.rejects = rejects
    return region


@pytest.mark.parametrize("shape", [(400, 100), (100, 400), (60, 60), (2000, 1500)])
def test_overlay_keeps_the_shape_and_stays_readable(shape):
    h, w = shape
    image = np.full((h, w), 120, np.uint8)
    amap = np.zeros((h, w), np.float32)
    amap[h // 3 : h // 2, w // 3 : w // 2] = 0.4
    out = render_overlay(image, amap, [_region((w // 3, h // 3, w // 2, h // 2))], 0.2, "NG", 0.31, 0.25, title="part")
    banner = next(i for i in range(out.shape[0]) if not (out[i, 1] == BANNER_COLOUR).all())
    assert banner >= 16 and (out[:banner] != BANNER_COLOUR).any()  # a banner with verdict, score, threshold
    picture_h = out.shape[0] - banner
    picture_w = round(w * picture_h / h)  # same scale on both axes: the part keeps its shape
    assert min(picture_h, picture_w) >= 320 - 1 or max(picture_h, picture_w) >= 1600 - 1  # small parts scaled up
    assert max(picture_h, picture_w) <= 1600  # large ones down
    assert out.shape[1] > picture_w  # the colour scale sits beside the picture


def test_overlay_has_a_colour_scale_and_visible_heat_below_the_threshold():
    image = np.full((300, 300), 120, np.uint8)
    amap = np.full((300, 300), 0.05, np.float32)  # a good part: map well below the pixel threshold 0.2
    out = render_overlay(image, amap, [], 0.2)
    bar = out[:, -60:]
    assert ((bar[..., 2] > 200) & (bar[..., 0] < 80)).any() and ((bar[..., 0] > 200) & (bar[..., 2] < 80)).any()
    body = out[:, :300].astype(int)
    assert np.abs(body - 120).max() > 25  # the heat map is visible, not blended away


def test_verdict_and_region_colours_never_clash_with_the_ground_truth_green():
    for colour in (NG_COLOUR, OK_COLOUR, REGION_COLOUR):
        b, g, r = colour
        assert g < max(b, r), colour  # not a green
        assert np.abs(np.subtract(colour, GROUND_TRUTH_GREEN)).sum() > 250


def test_region_labels_grow_with_the_picture():
    def label_height(size):
        image = np.full((size, size), 120, np.uint8)
        out = render_overlay(image, np.zeros((size, size), np.float32), [_region((size // 2, size // 2, size // 2 + 20, size // 2 + 20))],
                             0.2, colour_bar=False, min_side=size, max_side=size)
        # label text is drawn in the region colour above the box
        mask = np.all(out == NG_COLOUR, axis=2)
        mask[size // 2 - 2 :, :] = False
        rows = np.nonzero(mask.any(axis=1))[0]
        return rows.max() - rows.min() if rows.size else 0

    assert label_height(1500) > 1.5 * label_height(320) > 0


def test_calibration_top_good_pictures_are_labelled(tmp_path, tiny_expert_dir, capsys):
    recipe = write_recipe(tmp_path, tiny_expert_dir)
    good = tmp_path / "good"
    good.mkdir()
    for frame in synthetic_frames(5, defect=None, start=5000):
        cv2.imwrite(str(good / f"{frame.name}.png"), frame.image)
    assert main(["calibrate", str(recipe), "--good", str(good), "--no-progress"]) == 0
    top = cv2.imread(str(tmp_path / "recipe.calibration" / "top_good_1.png"))
    assert top.shape[0] > 224 + 16 and top.shape[1] > 224 + 30  # banner above, colour scale beside
    assert (top[:10, :] == BANNER_COLOUR).all(axis=2).mean() > 0.5


def test_eval_worst_cases_of_tall_parts_are_tall_pictures(tmp_path, tiny_expert_dir):
    """500x1250-like parts: the grid cells follow the aspect ratio instead of ~90x230 px stamps."""
    root = tmp_path / "ds" / "tall"
    rng = np.random.default_rng(0)
    for split, names in (("train/good", range(3)), ("test/good", range(2)), ("test/crack", range(2))):
        (root / split).mkdir(parents=True)
        for i in names:
            img = np.clip(128 + rng.normal(0, 6, (280, 112)), 0, 255).astype(np.uint8)
            if "crack" in split:
                img[100:140, 50:56] = 20
                (root / "ground_truth" / "crack").mkdir(parents=True, exist_ok=True)
                mask = np.zeros_like(img)
                mask[100:140, 50:56] = 255
                cv2.imwrite(str(root / "ground_truth" / "crack" / f"{i:03d}_mask.png"), mask)
            cv2.imwrite(str(root / split / f"{i:03d}.png"), img)
    recipe = write_recipe(tmp_path, tiny_expert_dir, {"tiling": {"mode": "tile"}})
    assert main(["eval", str(recipe), str(tmp_path / "ds"), "--out", str(tmp_path / "r"), "--no-progress", "--worst", "2"]) == 0
    grid = cv2.imread(str(tmp_path / "r" / "worst_tall.png"))
    assert grid.shape[0] > 1.5 * grid.shape[1]  # two rows of tall cells
    assert grid.shape[0] >= 1000  # each thumbnail several hundred px tall

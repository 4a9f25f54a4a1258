"""End to end with the tiny random expert on synthetic frames: real export, real ONNX Runtime."""

import json

import cv2
import numpy as np

from edge.cli import main
from edge.config import load_recipe
from edge.inspector import Inspector
from tests.fixtures.expert import synthetic_frames, write_recipe


def _auroc(labels, scores) -> float:
    """Mann-Whitney AUROC (ties count half); scikit-learn agrees, see the evaluation tests."""
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_defect_frames_score_above_good_frames_and_the_top_region_finds_the_defect(tiny_recipe_path):
    inspector = Inspector.from_recipe(load_recipe(tiny_recipe_path))
    frames = synthetic_frames(40)
    results = [inspector.inspect(f.image) for f in frames]
    labels = [f.ground_truth is not None for f in frames]
    assert 10 <= sum(labels) <= 30
    # The tiny random expert measured 1.00 on these 40 frames; 0.90 leaves room for BLAS differences.
    assert _auroc(labels, [r.score for r in results]) >= 0.90
    hits = []
    for frame, result in zip(frames, results):
        if frame.ground_truth is None:
            continue
        assert result.verdict == "NG"
        x0, y0, x1, y1 = result.regions[0].bbox
        hits.append(bool(frame.ground_truth[y0:y1, x0:x1].any()))
    assert np.mean(hits) >= 0.85  # measured 22/22
    goods = [r for f, r in zip(frames, results) if f.ground_truth is None]
    assert np.mean([r.verdict == "OK" for r in goods]) >= 0.85


def test_gray_16bit_and_odd_sized_images_are_inspected(tiny_recipe_path):
    inspector = Inspector.from_recipe(load_recipe(tiny_recipe_path))
    frame = synthetic_frames(1, defect="spot", width=301, height=157, channels=1)[0]
    gray16 = frame.image.astype(np.uint16) * 257
    result = inspector.inspect(gray16)
    assert result.anomaly_map.shape == (157, 301)
    small = inspector.inspect(frame.image[:40, :50])  # smaller than the model input
    assert small.anomaly_map.shape == (40, 50)


def test_roi_results_are_in_frame_coordinates(tmp_path, tiny_expert_dir, tiny_bank_path):
    import shutil

    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, {"roi": {"x": 40, "y": 20, "width": 224, "height": 224}, "source": {"width": 300, "height": 300}}))
    frame = synthetic_frames(1, defect="spot")[0]
    big = np.zeros((300, 300, 3), np.uint8)
    big[20:244, 40:264] = frame.image
    result = Inspector.from_recipe(recipe).inspect(big)
    assert result.anomaly_map.shape == (300, 300)
    assert result.anomaly_map[:20].max() == 0 and result.anomaly_map[:, :40].max() == 0
    ys, xs = np.nonzero(frame.ground_truth)
    x0, y0, x1, y1 = result.regions[0].bbox
    assert x0 <= xs.mean() + 40 <= x1 and y0 <= ys.mean() + 20 <= y1


def test_inspect_cli_writes_json_and_overlay(tiny_recipe_path, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for f in synthetic_frames(3, defect="scratch"):
        cv2.imwrite(str(images / f"{f.name}.png"), f.image)
    out = tmp_path / "out"
    assert main(["inspect", str(tiny_recipe_path), str(images), "--out", str(out)]) == 0
    for f in synthetic_frames(3, defect="scratch"):
        record = json.loads((out / f"{f.name}.json").read_text())
        assert record["verdict"] in ("OK", "NG") and set(record) >= {"score", "verdict", "regions", "timings"}
        for region in record["regions"]:
            assert set(region) >= {"bbox", "area_px", "location", "peak", "mean"}
            assert len(region["bbox"]) == 4
        overlay = cv2.imread(str(out / f"{f.name}.png"))
        # readable picture: upscaled so the short side is >= 320 px, a banner above, a colour scale beside
        assert overlay.shape[0] > 320 and overlay.shape[1] > 320 and overlay.shape[2] == 3


def test_a_defect_in_one_known_tile_lights_up_that_place_of_the_full_map(tiny_expert_dir, tmp_path):
    """Tile mode on a wide frame with the real expert: the map peaks on the planted square, not elsewhere."""
    from edge.bank import build_bank
    from edge.expert import load_expert

    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, {"tiling": {"mode": "tile", "resolution": 112, "overlap": 0.0}}))
    rng = np.random.default_rng(0)
    good = [np.clip(128 + rng.normal(0, 6, (112, 336)), 0, 255).astype(np.uint8) for _ in range(3)]
    bank = build_bank(load_expert(recipe.expert), good, recipe, progress=False)
    bank.save(tmp_path / "bank.npz")
    inspector = Inspector.from_recipe(recipe)
    frame = np.clip(128 + rng.normal(0, 6, (112, 336)), 0, 255).astype(np.uint8)
    frame[60:80, 250:270] = 250  # third tile, lower middle
    m = inspector.inspect(frame).anomaly_map
    y, x = np.unravel_index(int(np.argmax(m)), m.shape)
    assert 50 <= y <= 90 and 240 <= x <= 280
    # a transposed or shifted map would put the peak elsewhere
    assert m[60:80, 250:270].mean() > 2 * m[:, :200].mean()

"""Location accuracy inputs: the largest ground-truth region and the top predicted region, in 3×3 names."""

from __future__ import annotations

import json

import numpy as np

from edge.cli import main
from edge.config.expert import RoiConfig
from edge.evaluation.datasets import load_dataset
from edge.evaluation.runner import _largest_region_location, _predicted_location
from edge.types import InspectionResult, Region
from tests.fixtures.expert import write_recipe


def _result(amap: np.ndarray, regions: list[Region]) -> InspectionResult:
    return InspectionResult(score=float(amap.max()), verdict="NG", reason="", regions=regions, anomaly_map=amap)


def _region(peak: float, location: str) -> Region:
    return Region(bbox=[0, 0, 1, 1], area_px=1, centroid=[0.0, 0.0], peak=peak, mean=peak, location=location)


def test_eval_largest_truth_region_wins():
    mask = np.zeros((90, 90), bool)
    mask[2:6, 2:6] = True  # small, top-left
    mask[60:85, 65:88] = True  # large, bottom-right
    assert _largest_region_location(mask, None) == "bottom-right"
    mask[35:60, 35:60] = True  # larger still (625 px vs 575 px), centre
    assert _largest_region_location(mask, None) == "center"
    assert _largest_region_location(np.zeros((9, 9), bool), None) is None


def test_eval_truth_location_is_relative_to_the_roi():
    mask = np.zeros((100, 200), bool)
    mask[10:20, 110:120] = True  # right half of the frame ...
    roi = RoiConfig(x=100, y=0, width=100, height=100)
    assert _largest_region_location(mask, None) == "top"
    assert _largest_region_location(mask, roi) == "top-left"  # ... but top-left of the inspected part


def test_eval_predicted_location_uses_highest_peak_then_map_maximum():
    amap = np.zeros((30, 30), np.float32)
    amap[25, 2] = 1.0
    regions = [_region(0.4, "top"), _region(0.9, "right"), _region(0.5, "left")]
    assert _predicted_location(_result(amap, regions), None) == ("right", False)
    # No region passed the pixel threshold: the map's maximum stands in and is flagged.
    assert _predicted_location(_result(amap, []), None) == ("bottom-left", True)


def test_eval_with_roi_recipe(tiny_expert_dir, eval_dataset_dir, tmp_path):
    """A recipe with an ROI: maps are frame-sized (zeros outside), metrics still complete."""
    recipe = write_recipe(tmp_path, tiny_expert_dir, {"roi": {"x": 10, "y": 5, "width": 110, "height": 84}})
    out = tmp_path / "roi"
    assert main(["eval", str(recipe), str(eval_dataset_dir), "--out", str(out), "--categories", "part_odd",
                 "--no-progress"]) == 0
    entry = json.loads((out / "metrics.json").read_text())["categories"]["part_odd"]
    assert all(entry[m] is not None for m in ("pixel_auroc", "aupro", "location_accuracy"))


def test_eval_single_category_folder(eval_dataset_dir):
    dataset = load_dataset(eval_dataset_dir / "part_gray")
    assert [c.name for c in dataset.categories] == ["part_gray"] and dataset.root == eval_dataset_dir

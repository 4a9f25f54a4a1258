"""Regions from a thresholded map, and the OK/NG rules."""

import numpy as np
import pytest

from edge.config.loader import parse_recipe
from edge.regions import extract_regions, location_name
from edge.verdict import decide

RECIPE = """
version: 1
source: {type: synthetic}
expert: {backend: onnxruntime, model: expert.onnx}
bank: {path: bank.npz}
thresholds: {image_score: 0.5, pixel: 0.3}
rules: {min_area_px: 10}
pixel_pitch_mm: 0.1
"""


@pytest.mark.parametrize(
    "cx,cy,name",
    [(5, 5, "top-left"), (50, 5, "top"), (95, 5, "top-right"), (5, 50, "left"), (50, 50, "center"),
     (95, 50, "right"), (5, 95, "bottom-left"), (50, 95, "bottom"), (95, 95, "bottom-right")],
)
def test_location_names_cover_the_3x3_grid(cx, cy, name):
    assert location_name(cx, cy, 100, 100) == name


def test_regions_have_frame_coordinates_area_and_scores():
    m = np.zeros((60, 80), dtype=np.float32)
    m[10:14, 60:70] = 0.8  # 40 px, top-right
    m[40:42, 5:7] = 0.4  # 4 px, bottom-left
    regions = extract_regions(m, 0.3, offset=(100, 200), pixel_pitch_mm=0.1)
    assert len(regions) == 2
    big, small = regions  # strongest first
    assert big.bbox == [160, 210, 170, 214]
    assert big.area_px == 40 and big.area_mm2 == pytest.approx(0.4)
    assert big.peak == pytest.approx(0.8) and big.mean == pytest.approx(0.8)
    assert big.location == "top-right" and small.location == "bottom-left"
    assert big.centroid == pytest.approx([164.5, 211.5])


def test_no_region_below_the_threshold():
    assert extract_regions(np.full((10, 10), 0.29, np.float32), 0.3) == []


def test_verdict_rules(tmp_path):
    recipe = parse_recipe(RECIPE, tmp_path / "r.yaml")
    m = np.zeros((30, 30), np.float32)
    m[0:2, 0:2] = 0.9  # 4 px: below min_area_px
    small = extract_regions(m, 0.3)
    v = decide(0.2, small, recipe)
    assert v.verdict == "OK" and not v.regions[0].rejects
    m[0:5, 0:5] = 0.9  # 25 px
    big = extract_regions(m, 0.3)
    v = decide(0.2, big, recipe)
    assert v.verdict == "NG" and "region top-left 25 px >= 10 px" in v.reason
    v = decide(0.6, [], recipe)
    assert v.verdict == "NG" and v.reason.startswith("image score 0.600 >= 0.500")


def test_decide_is_pure_regions_unchanged_and_no_file_read(tmp_path, monkeypatch):
    """decide() returns judged copies; the regions given stay as they were, and nothing is stat()ed per call."""
    import os

    from edge.config import parse_recipe
    from edge.types import Region
    from tests.fixtures.config import CONFIG_BASE_RECIPE

    text = CONFIG_BASE_RECIPE.split("rules:\n")[0] + "rules:\n  min_area_px: 16\n  always_reject: [crack]\n"
    text += "assistant:\n  prototypes: missing-protos.npz\n"
    recipe = parse_recipe(text, tmp_path / "r.yaml")
    region = Region(bbox=[0, 0, 10, 10], area_px=100, centroid=[5.0, 5.0], peak=0.9, mean=0.5, location="top-left",
                    feature=np.ones(8, np.float32))
    before = (region.rejects, region.zone, region.defect_type)
    calls = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: calls.append(a) or real_stat(*a, **k))
    judged = decide(0.1, [region], recipe)
    assert judged.verdict == "NG" and judged.regions[0] is not region
    assert (region.rejects, region.zone, region.defect_type) == before
    assert not calls, f"decide() touched the file system: {calls}"

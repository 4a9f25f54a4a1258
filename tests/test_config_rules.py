"""Reject rules from the recipe: zones (own thresholds, ignore), mm² areas, always-reject defect types."""

from __future__ import annotations

from edge.config import parse_recipe
from edge.types import Region
from edge.verdict import decide
from tests.fixtures.config import CONFIG_BASE_RECIPE

ZONES = """\
  zones:
    - name: seal
      polygon: [[10, 10], [200, 10], [200, 100], [10, 100]]
      min_area_px: 4
    - name: label
      polygon: [[300, 300], [440, 300], [440, 440], [300, 440]]
      ignore: true
    - name: strict-peak
      polygon: [[0, 200], [100, 200], [100, 300], [0, 300]]
      pixel: 0.8
"""


def _recipe(tmp_path, rules_block: str, extra: str = ""):
    text = CONFIG_BASE_RECIPE.split("rules:\n")[0] + "rules:\n  min_area_px: 16\n" + rules_block
    text += "decision:\n  window_ms: 150\n" + extra
    return parse_recipe(text, tmp_path / "line3.yaml")


def _region(cx: float, cy: float, area: int, peak: float = 0.5, defect_type=None) -> Region:
    region = Region(bbox=[int(cx) - 2, int(cy) - 2, int(cx) + 2, int(cy) + 2], area_px=area, centroid=[cx, cy],
                    peak=peak, mean=peak * 0.8, location="center", area_mm2=area * 0.05**2)
    if defect_type:
        region.defect_type = defect_type
    return region


def test_config_rules_general_min_area(tmp_path):
    recipe = _recipe(tmp_path, "")
    assert decide(0.1, [_region(150, 150, 10)], recipe).verdict == "OK"
    verdict = decide(0.1, [_region(150, 150, 20)], recipe)
    assert verdict.verdict == "NG" and verdict.reason == "region center 20 px >= 16 px"


def test_config_rules_zone_overrides_min_area(tmp_path):
    recipe = _recipe(tmp_path, ZONES)
    small_in_seal = _region(50, 50, 5)
    verdict = decide(0.1, [small_in_seal], recipe)
    assert verdict.verdict == "NG"
    assert verdict.reason == "region center in zone seal 5 px >= 4 px"
    assert verdict.regions[0].zone == "seal"
    assert decide(0.1, [_region(150, 150, 5)], recipe).verdict == "OK"  # same size outside: general rule


def test_config_rules_ignored_zone_never_rejects(tmp_path):
    recipe = _recipe(tmp_path, ZONES)
    big_on_label = _region(350, 350, 5000)
    verdict = decide(0.1, [big_on_label], recipe)
    assert verdict.verdict == "OK" and not verdict.regions[0].rejects
    assert decide(0.9, [big_on_label], recipe).verdict == "NG"  # the image score still applies


def test_config_rules_zone_peak_threshold(tmp_path):
    recipe = _recipe(tmp_path, ZONES)
    assert decide(0.1, [_region(50, 250, 100, peak=0.7)], recipe).verdict == "OK"
    assert decide(0.1, [_region(50, 250, 100, peak=0.85)], recipe).verdict == "NG"


def test_config_rules_mm2(tmp_path):
    recipe = _recipe(tmp_path, "  min_area_mm2: 0.1\n")  # 0.1 mm² at 0.05 mm/px = 40 px
    assert decide(0.1, [_region(150, 150, 30)], recipe).verdict == "OK"
    verdict = decide(0.1, [_region(150, 150, 41)], recipe)
    assert verdict.verdict == "NG" and "mm² >= 0.1 mm²" in verdict.reason


def test_config_rules_always_reject_type(tmp_path):
    (tmp_path / "protos.npz").write_bytes(b"")
    recipe = _recipe(tmp_path, ZONES + "  always_reject: [crack]\n", "assistant:\n  prototypes: protos.npz\n")
    tiny_crack_on_label = _region(350, 350, 2, defect_type="crack")
    verdict = decide(0.1, [tiny_crack_on_label], recipe)
    assert verdict.verdict == "NG" and "crack always rejects" in verdict.reason
    assert decide(0.1, [_region(350, 350, 2, defect_type="spot")], recipe).verdict == "OK"


def test_config_rules_always_reject_by_prototype_match(tmp_path):
    """With prototypes, a region's type is its nearest prototype (above type_min_similarity)."""
    import numpy as np

    from edge.prototypes import prototypes_from_features

    rng = np.random.default_rng(0)
    crack, spot = rng.standard_normal(32), rng.standard_normal(32)
    prototypes_from_features({"crack": [crack], "spot": [spot]}).save(tmp_path / "protos.npz")
    recipe = _recipe(tmp_path, ZONES + "  always_reject: [crack]\n  type_min_similarity: 0.9\n",
                     "assistant:\n  prototypes: protos.npz\n")
    from edge.prototypes import Prototypes

    prototypes = Prototypes.load(tmp_path / "protos.npz")  # held by the inspector; decide() reads no file
    near_crack = _region(350, 350, 2)
    near_crack.feature = (crack + 0.05 * rng.standard_normal(32)).astype(np.float32)
    verdict = decide(0.1, [near_crack], recipe, prototypes)
    assert verdict.verdict == "NG" and verdict.regions[0].defect_type == "crack" and verdict.regions[0].rejects
    assert near_crack.defect_type is None, "decide() must not change the regions it is given"
    unlike_any = _region(350, 350, 2)
    unlike_any.feature = rng.standard_normal(32).astype(np.float32)
    judged = decide(0.1, [unlike_any], recipe, prototypes)
    assert judged.verdict == "OK" and judged.regions[0].defect_type is None

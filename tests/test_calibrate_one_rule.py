"""Calibration predicts verdicts with the lane's own rule: what calibrate says per image is what the lane does.

`iad-edge calibrate` proposes thresholds and writes, per image, the verdict
those thresholds give (scores.json). Here the recipe has an always-reject
defect type (``spot``) whose prototypes calibrate builds from the defect
folder; then the real lane runs the calibrated recipe over the same defect
images. Every verdict must agree, including parts rejected only because a
region is a spot (before, calibration judged regions without their features,
so it predicted those parts OK while the lane rejected them).
"""

from __future__ import annotations

import json
import time

import cv2
import yaml

from edge.cli import main
from edge.config import load_recipe
from edge.imageio import read_image
from edge.station import build_lane
from edge.types import Frame
from tests.fixtures.expert import synthetic_frames, write_recipe


class _Images:
    """A pulled source over named images (what a folder replay does), trigger ids in order."""

    def __init__(self, named):
        self.named = named

    def __iter__(self):
        for i, (name, image) in enumerate(self.named):
            yield Frame(image, i, time.time(), source="test", name=name)

    def close(self):
        pass


def _write(folder, frames):
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), frame.image)


def test_calibrate_predicts_exactly_the_lanes_verdicts_including_always_reject(tmp_path, tiny_expert_dir):
    _write(tmp_path / "good", synthetic_frames(8, defect=None, start=200))
    _write(tmp_path / "defects/spot", synthetic_frames(4, defect="spot", start=300))
    _write(tmp_path / "defects/scratch", synthetic_frames(4, defect="scratch", start=400))
    # a large minimum area: small spot regions reject only through their type
    rules = {"min_area_px": 800, "always_reject": ["spot"], "type_min_similarity": 0.5}
    recipe_path = write_recipe(tmp_path, tiny_expert_dir, {"rules": rules, "assistant": {"prototypes": "prototypes.npz"}})
    assert main(["calibrate", str(recipe_path), "--good", str(tmp_path / "good"), "--defects",
                 str(tmp_path / "defects"), "--margin", "1.0", "--no-progress"]) == 0
    predicted = {row["name"]: row["verdict"] for row in
                 json.loads((tmp_path / "recipe.calibration/scores.json").read_text())["images"] if not row["good"]}
    assert len(predicted) == 8

    # the line runs the calibrated recipe: the generated thresholds and prototypes, nothing else changed
    data = yaml.safe_load(recipe_path.read_text())
    del data["thresholds"]
    data["include"] = ["recipe.generated.yaml"]
    line_path = tmp_path / "line.yaml"
    line_path.write_text(yaml.safe_dump(data, sort_keys=False))
    recipe = load_recipe(line_path)
    assert recipe.assistant.prototypes is not None and recipe.rules.always_reject == ["spot"]
    named = [(f"{kind}/{p.name}", read_image(p)) for kind in ("spot", "scratch")
             for p in sorted((tmp_path / "defects" / kind).iterdir())]
    lane = build_lane(recipe, source=_Images(named), mqtt_enabled=False, pull=True)
    decisions = {}
    lane.add_observer(lambda frame, result, decision: decisions.update({frame.name: decision}))
    lane.run(max_frames=len(named))

    assert all(not d.fail_safe for d in decisions.values()), {n: d.reason for n, d in decisions.items()}
    lane_verdicts = {name: str(d.verdict) for name, d in decisions.items()}
    assert lane_verdicts == predicted, {n: decisions[n].reason for n in lane_verdicts if lane_verdicts[n] != predicted[n]}
    by_type = [n for n, d in decisions.items() if "spot always rejects" in d.reason and "image score" not in d.reason]
    assert by_type, "no part was rejected by the always-reject rule alone: the test would not exercise it"

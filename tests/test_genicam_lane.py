"""Frames from the GenTL simulator go through the lane to the expert and get real decisions."""

from __future__ import annotations

import shutil

import yaml

from edge.config import load_recipe
from edge.station import build_lane
from tests.fixtures.expert import write_recipe


def test_camera_frames_reach_the_expert_and_get_decisions(tmp_path, genicam_cti, tiny_expert_dir, tiny_bank_path):
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    path = write_recipe(tmp_path, tiny_expert_dir, {"mqtt": {"enabled": False}})
    data = yaml.safe_load(path.read_text())
    data["source"] = {"type": "genicam", "producer": str(genicam_cti), "fetch_timeout_s": 2,
                      "settings": [{"node": "PixelFormat", "value": "Mono8"}, {"node": "Width", "value": 224},
                                   {"node": "Height", "value": 160}]}
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    lane = build_lane(recipe)
    seen = []
    lane.add_observer(lambda frame, result, decision: seen.append((frame, result, decision)))
    counters = lane.run(max_frames=4)
    assert counters["frames"] == counters["decisions"] == 4
    assert len(seen) == 4
    for frame, result, decision in seen:
        assert frame.source == "genicam" and frame.image.shape == (160, 224)
        assert not decision.fail_safe and result is not None and result.anomaly_map.shape == (160, 224)
        assert decision.delivery == "local"
    ids = [f.trigger_id for f, _, _ in seen]
    assert ids == sorted(ids)
    status = lane.status()
    assert status["counters"]["incomplete_buffers"] == 0 and status["source"]["frames"] >= 4

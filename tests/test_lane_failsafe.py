"""Fail-safe paths of the lane: full queue and decision window exceeded, never silent, never late."""

from __future__ import annotations

import shutil
import time

from edge.config import load_recipe
from edge.station import build_lane
from tests.fixtures.expert import synthetic_frames, write_recipe


class _Burst:
    """A 'camera' that delivers all its frames at once (faster than any inspection)."""

    def __init__(self, frames):
        self.frames = frames

    def __iter__(self):
        for i, frame in enumerate(self.frames):
            frame.trigger_id, frame.trigger_time = 500 + i, time.time()
            yield frame

    def close(self):
        pass


def _recipe(tmp_path, expert_dir, bank, **overrides):
    shutil.copy(bank, tmp_path / "bank.npz")
    return load_recipe(write_recipe(tmp_path, expert_dir, overrides))


def test_full_queue_gives_each_frame_a_counted_fail_safe_decision(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, decision={"window_ms": 10000, "fail_safe": "NG"})
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/decision")
    lane = build_lane(recipe, mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port,
                      source=_Burst(synthetic_frames(20, defect=None)), queue_size=1, pull=False)
    assert lane.link.wait_connected(10)
    decisions = []
    lane.add_observer(lambda f, r, d: decisions.append(d))
    counters = lane.run()
    assert counters["frames"] == counters["decisions"] == 20
    dropped = [d for d in decisions if d.reason.startswith("inspection queue full")]
    assert counters["dropped"] == len(dropped) >= 1
    assert all(d.fail_safe and d.verdict == "NG" and d.score is None for d in dropped)
    assert plc.wait_for(lambda m: len(m) == 20)  # dropped frames' decisions were published too
    assert sorted(m.json["trigger_id"] for m in plc.messages) == list(range(500, 520))


def test_decision_after_the_window_is_not_published_but_counted_and_kept_in_result(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, decision={"window_ms": 1, "fail_safe": "NG"})
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/#")
    lane = build_lane(recipe, mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port)
    assert lane.link.wait_connected(10)
    counters = lane.run(max_frames=4)
    assert counters["decisions"] == 4 and counters["late"] == 4 and counters["fail_safe"] == 4
    assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/result")]) == 4)
    assert not plc.on("/decision")  # nothing late reaches the PLC
    for result in (m.json for m in plc.on("/result")):
        assert result["fail_safe"] and result["verdict"] == "NG" and result["decision_delivery"] == "late"
        assert "decision window exceeded" in result["reason"]

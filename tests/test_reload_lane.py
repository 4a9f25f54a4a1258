"""Live reload on a running lane with a real broker: valid edits apply from the next frame, invalid ones change nothing."""

from __future__ import annotations

import shutil
import time

from edge.config import load_recipe
from edge.lane.watch import RecipeWatcher
from edge.station import build_lane
from tests.fixtures.expert import write_recipe


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_reload_valid_edit_applies_from_next_frame_invalid_edit_changes_nothing(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    all_ok = {"thresholds": {"image_score": 2.0, "pixel": 2.0}, "source": {"rate_hz": 10}}
    path = write_recipe(tmp_path, tiny_expert_dir, all_ok, name="line3.yaml")
    recipe = load_recipe(path)
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/#")
    lane = build_lane(recipe, mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port, status_interval_s=0.1)
    assert lane.link.wait_connected(10)
    decided = []
    lane.add_observer(lambda frame, result, decision: decided.append((frame.trigger_id, decision.verdict, decision.fail_safe)))

    switch_points = []

    def set_status(key, value):
        if key == "recipe_applied" and value["sha256"] != recipe.sha256:
            switch_points.append(lane.counters.get("decisions"))  # called between two frames, in the lane's thread
        lane.set_status_field(key, value)

    watcher = RecipeWatcher(path, lane.apply_recipe, set_status, current=recipe, interval_s=0.05).start()
    lane.start()
    try:
        assert _wait(lambda: len(decided) >= 4)
        # a valid edit: every part NG from now on
        path.write_text(path.read_text().replace("image_score: 2.0", "image_score: 0.0"))
        assert _wait(lambda: watcher.applied == 1), watcher.history
        assert _wait(lambda: len(decided) >= switch_points[0] + 4)
        # an invalid edit: nothing changes, the error (file:line) is published on status
        text = path.read_text()
        path.write_text(text.replace("image_score: 0.0", "image_score: 5"))
        line = 1 + text.splitlines().index("  image_score: 0.0")
        expected = f"{path}:{line}:3: thresholds.image_score: must be between 0 and 2 (got 5)"
        assert plc.wait_for(lambda m: any(
            x.topic.endswith("/status") and expected in str((x.json.get("extras") or {}).get("recipe_error")) for x in m))
        count_at_error = len(decided)
        assert _wait(lambda: len(decided) >= count_at_error + 4)
        assert lane.recipe.thresholds.image_score == 0.0
        assert watcher.errors == 1 and watcher.applied == 1
    finally:
        watcher.stop()
        lane.stop()

    total = lane.counters.get("frames")
    assert lane.counters.get("decisions") == total
    ids = [trigger for trigger, _, _ in decided]
    assert ids == list(range(total)), "every trigger decided exactly once, in order"
    assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/decision")]) == total)
    assert [x.json["trigger_id"] for x in plc.on("/decision")] == list(range(total))
    # (a fail-safe decision, e.g. a frame dropped on an overloaded machine, says nothing about the recipe)
    n = switch_points[0]
    before = [verdict for _, verdict, fail_safe in decided[:n] if not fail_safe]
    after = [verdict for _, verdict, fail_safe in decided[n:] if not fail_safe]
    assert before and before == ["OK"] * len(before), "frames before the edit keep the old recipe"
    assert len(after) >= 8 and after == ["NG"] * len(after), \
        "from the next frame on the new recipe decides, and the bad edit changed nothing"
    status = [x.json for x in plc.on("/status") if (x.json.get("extras") or {}).get("recipe_applied")]
    assert status[-1]["extras"]["recipe_applied"]["values"]["thresholds"]["image_score"] == 0.0
    assert status[-1]["recipe_sha256"] == status[-1]["extras"]["recipe_applied"]["sha256"]

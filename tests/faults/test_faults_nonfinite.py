"""Fault: the expert returns NaN/inf (an FP16 engine overflowing): the PLC gets the fail-safe verdict, status counts it.

The production lane runs in the test process with the real tiny DINOv2 on ONNX
Runtime, wrapped so that chosen frames get one poisoned patch distance; a real
mosquitto carries the decisions, results and status to an MQTT subscriber (the PLC).
"""

from __future__ import annotations

import math

import pytest

from tests.faults.harness import observe
from tests.test_non_finite import FRAMES, POISONED, _lane

INJECTED = {math.nan: "NaN", math.inf: "+inf"}


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_poisoned_patch_distance_rejects_the_part_fail_safe_and_is_counted_on_status(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder, fault_table, value):
    recipe, lane = _lane(tmp_path, tiny_expert_dir, tiny_bank_path, "distances", value,
                         mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port, status_interval_s=0.1)
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/#")
    assert lane.link.wait_connected(10)
    seen = []
    lane.add_observer(lambda frame, result, decision: seen.append(decision))
    counters = lane.run(max_frames=FRAMES)

    # today's code said "image score nan < 1.900, no region >= 16 px" -> OK for the NaN frames
    by_id = {d.trigger_id: d for d in seen}
    assert sorted(by_id) == list(range(FRAMES))
    for i, d in by_id.items():
        if i in POISONED:
            assert d.fail_safe and d.verdict == "NG" and d.score is None, (i, d.verdict, d.reason)
            assert d.reason.startswith("non-finite values: expert patch distances: 1 of 64 values are not finite")
        else:
            assert not d.fail_safe and d.verdict == "OK" and math.isfinite(d.score), (i, d.reason)
    assert counters["non_finite"] == counters["fail_safe"] == len(POISONED)
    assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/result")]) == FRAMES)
    published = {x.json["trigger_id"]: x.json["verdict"] for x in plc.on("/decision")}
    assert published == {i: "NG" if i in POISONED else "OK" for i in range(FRAMES)}
    row = observe(plc, f"expert returns {INJECTED[value]} in one patch distance (frames {', '.join(map(str, POISONED))})",
                  FRAMES, note="every poisoned part gets the fail-safe NG with the reason; the others are decided "
                               "normally (thresholds high enough that every clean part is OK)")
    fault_table.append(row)
    assert row["status"]["non_finite"] == len(POISONED) and row["status"]["state"] == "stopped"
    assert row["decisions_late"] == 0 and row["fail_safe_results"] == len(POISONED)

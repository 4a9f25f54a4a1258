"""The real-time lane end to end: tiny ONNX expert, synthetic parts, real mosquitto, a subscriber as the PLC."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from edge.config import load_recipe
from edge.station import build_lane
from edge.types import Frame
from tests.fixtures.expert import synthetic_frames, write_recipe


def _recipe(tmp_path: Path, expert_dir: Path, bank: Path, **overrides):
    shutil.copy(bank, tmp_path / "bank.npz")
    return load_recipe(write_recipe(tmp_path, expert_dir, overrides))


def _lane(recipe, broker, **kw):
    return build_lane(recipe, mqtt_host=broker.host, mqtt_port=broker.port, status_interval_s=0.5, **kw)


def _wait_connected(lane):
    assert lane.link.wait_connected(10), lane.link.last_error


def test_n_triggers_give_n_decisions_in_order_and_ng_results_are_archived(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path)
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/#")
    lane = _lane(recipe, mosquitto_broker)
    _wait_connected(lane)
    seen = []
    lane.add_observer(lambda frame, result, decision: seen.append((frame.trigger_id, result, decision)))
    counters = lane.run(max_frames=12)

    assert counters["frames"] == counters["decisions"] == 12
    assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/result")]) == 12)
    decisions = [m.json for m in plc.on("/decision")]
    assert [d["trigger_id"] for d in decisions] == list(range(12))
    assert all(m.expiry_s is not None and m.expiry_s >= 1 for m in plc.on("/decision"))
    results = {m.json["trigger_id"]: m.json for m in plc.on("/result")}
    assert sorted(results) == list(range(12))
    assert all(r["recipe_sha256"] == recipe.sha256 and r["engine_sha256"] for r in results.values())
    ng = [r for r in results.values() if r["verdict"] == "NG"]
    assert ng, "the synthetic stream (defect_rate 0.5) should produce NG parts"
    assert counters["ng"] == len(ng) and counters["ok"] == 12 - len(ng)
    for r in ng:
        entry = Path(r["archive"])
        assert entry.is_dir(), entry
        assert {"frame.png", "map.png", "overlay.png", "result.json"} <= {p.name for p in entry.iterdir()}
        assert json.loads((entry / "result.json").read_text())["trigger_id"] == r["trigger_id"]
    assert all(r["archive"] is None for r in results.values() if r["verdict"] == "OK")
    # Observers saw every decision with its inspection result; the status went online then stopped.
    assert [s[0] for s in seen] == list(range(12)) and all(s[1] is not None for s in seen)
    assert plc.wait_for(lambda m: any(x.topic.endswith("/status") and x.json["state"] == "stopped" for x in m))
    stopped = [x.json for x in plc.on("/status") if x.json["state"] == "stopped"][-1]
    assert stopped["counters"]["decisions"] == 12 and stopped["counters"]["frames"] == 12


class _ListSource:
    """Frames from a list (bad frames among them), then the end of the stream."""

    def __init__(self, frames):
        self.frames = frames

    def __iter__(self):
        for frame in self.frames:
            frame.trigger_time = time.time()
            yield frame

    def close(self):
        pass


def test_bad_frames_get_a_fail_safe_decision_with_reason_and_the_lane_continues(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, decision={"window_ms": 5000, "fail_safe": "NG"})
    good = synthetic_frames(3, defect=None, start=2000)
    bad_images = [np.zeros((224, 224, 3), np.float32), np.zeros((0, 0), np.uint8), np.zeros((224, 224, 2), np.uint8)]
    frames = []
    for i in range(3):
        frames.append(good[i])
        frames.append(Frame(image=bad_images[i], trigger_id=0, trigger_time=0.0))
    for i, frame in enumerate(frames):
        frame.trigger_id = 100 + i
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/decision")
    lane = _lane(recipe, mosquitto_broker, source=_ListSource(frames))
    _wait_connected(lane)
    counters = lane.run()
    assert counters["decisions"] == 6 and counters["stage_errors"] == 3 and counters["fail_safe"] == 3
    assert plc.wait_for(lambda m: len(m) == 6)
    got = {d["trigger_id"]: d for d in (m.json for m in plc.messages)}
    assert sorted(got) == list(range(100, 106))
    for tid, expected in ((101, "unsupported pixel type float32"), (103, "empty image"), (105, "unsupported channel count 2")):
        assert got[tid]["fail_safe"] is True and got[tid]["verdict"] == "NG"
        assert got[tid]["reason"].startswith("bad frame:") and expected in got[tid]["reason"]
    for tid in (100, 102, 104):  # good frames after bad ones are inspected normally
        assert got[tid]["fail_safe"] is False and got[tid]["score"] is not None


def test_broker_outage_loses_no_result_delivers_no_late_decision_and_keeps_deciding(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path,
                     source={"type": "synthetic", "width": 224, "height": 224, "channels": 3, "defect_rate": 0.3,
                             "seed": 3, "rate_hz": 20},
                     decision={"window_ms": 1500, "fail_safe": "NG"})
    # A production-like broker and PLC: the PLC's persistent session survives the broker restart,
    # so results the lane re-sends before the PLC has reconnected are queued for it, not lost.
    mosquitto_broker.persistence = True
    mosquitto_broker.restart()
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/#", persistent=True)
    lane = _lane(recipe, mosquitto_broker)
    _wait_connected(lane)
    decisions = {}
    lane.add_observer(lambda frame, result, decision: decisions.__setitem__(decision.trigger_id, decision))
    total = 60
    lane.start(max_frames=total)
    try:
        assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/decision")]) >= 10, 30)
        mosquitto_broker.stop()
        outage_start = lane.counters.get("decisions")
        deadline = time.monotonic() + 30
        while lane.counters.get("decisions") < outage_start + 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        during = lane.counters.get("decisions") - outage_start
        mosquitto_broker.start()
        assert lane.wait(60)
    finally:
        lane.stop(drain_timeout_s=15)
    counters = lane.counters.snapshot()
    assert counters["frames"] == counters["decisions"] == total  # the lane kept deciding throughout
    assert during >= 15 and counters["undelivered"] >= 10
    ok = plc.wait_for(lambda m: len({x.json["trigger_id"] for x in m if x.topic.endswith("/result")}) == total, 30)
    missing = sorted(set(range(total)) - {m.json["trigger_id"] for m in plc.on("/result")})
    assert ok, f"results never received: {missing} (acked by the broker: {lane.link.results_acked})"
    result_ids = [m.json["trigger_id"] for m in plc.on("/result")]
    archive = {}  # the PLC side's archive of results, keyed by trigger id (QoS 1 is at-least-once)
    for m in plc.on("/result"):
        archive.setdefault(m.json["trigger_id"], m.json)
    assert sorted(archive) == list(range(total))  # nothing lost, one entry per trigger
    assert len(result_ids) - total <= lane.link.max_inflight_results  # re-sends bounded by the in-flight window
    # Decisions made while the broker was away were never sent, so none arrives after the reconnect.
    received = list(dict.fromkeys(m.json["trigger_id"] for m in plc.on("/decision")))
    not_sent = {tid for tid, d in decisions.items() if d.delivery != "sent"}
    assert len(not_sent) >= 10 and not (set(received) & not_sent)
    assert received == sorted(received)
    assert lane.link.reconnects >= 1

"""The assistant service: bounded backlog (drop oldest + `skipped`), MQTT intake, generation requests, crash recovery."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt

from edge.assistant.bus import AssistantBus
from edge.assistant.process import AssistantService
from edge.assistant.spool import SpoolReader, write_job
from edge.config import load_recipe
from edge.imageio import read_image

SERVICE_REGION = {"bbox": [80, 50, 130, 80], "area_px": 600, "centroid": [105.0, 65.0], "peak": 0.3, "mean": 0.2,
                  "location": "top", "rejects": True}


def _service_with_bus(recipe, broker):
    service = AssistantService(recipe, explainer=None)
    bus = AssistantBus(broker.host, broker.port, "iad-assistant-test", service.status_topic,
                       subscribe=(service.topics.result, service.topics.cmd("generate")), on_message=service.on_message)
    service._publish = bus.publish
    bus.start()
    assert bus.connected.wait(10)
    return service, bus


def test_the_bus_reports_connected_only_once_its_subscriptions_are_acknowledged(mosquitto_broker) -> None:
    """A message published right after ``connected`` must reach the assistant.

    paho sends SUBSCRIBE only after ``on_connect`` returns; a bus that flags itself connected inside
    ``on_connect`` lets a publisher race the broker's subscription (seen in CI: the PLC's messages were
    lost and the service waited for jobs that never came).
    """
    suback = threading.Event()
    bus = AssistantBus(mosquitto_broker.host, mosquitto_broker.port, "iad-assistant-suback", "iad/x/status/assistant",
                       subscribe=("iad/x/result",), on_message=lambda topic, body: None)
    chained = bus.client.on_subscribe

    def on_subscribe(*args) -> None:
        suback.set()
        if chained is not None:
            chained(*args)

    bus.client.on_subscribe = on_subscribe
    try:
        bus.start(wait_s=0)
        assert bus.connected.wait(10)
        assert suback.is_set(), "connected was flagged before the broker acknowledged the subscription"
    finally:
        bus.stop()


def _ng_job(trigger_id: int) -> dict:
    return {"kind": "explain", "session": "s1", "trigger_id": trigger_id, "verdict": "NG", "score": 0.3,
            "regions": [SERVICE_REGION]}


def test_backlog_overflow_drops_the_oldest_and_publishes_skipped(assistant_recipe_path, mosquitto_broker, mqtt_recorder, assistant_ng_image) -> None:
    recipe = load_recipe(assistant_recipe_path(backlog=2))
    rec = mqtt_recorder(mosquitto_broker, "iad/#")
    service, bus = _service_with_bus(recipe, mosquitto_broker)
    image = read_image(assistant_ng_image)
    try:
        for trigger in range(5):  # five NG parts arrive while the assistant is busy elsewhere
            write_job(recipe.assistant.spool, _ng_job(trigger), image)
        assert service.poll_spool() == 5
        assert len(service.backlog) == 2
        stop = threading.Event()
        service.run(stop, max_jobs=2)
        assert rec.wait_for(lambda msgs: len([m for m in msgs if m.topic.endswith("/explanation")]) >= 5, 20)
    finally:
        bus.stop()
    bodies = [m.json for m in rec.on("/explanation")]
    skipped = [b["trigger_id"] for b in bodies if b["status"] == "skipped"]
    done = [b for b in bodies if b["status"] == "done"]
    assert skipped == [0, 1, 2]  # the oldest, in order
    assert all("backlog full (2 jobs)" in b["reason"] for b in bodies if b["status"] == "skipped")
    assert [b["trigger_id"] for b in done] == [3, 4]
    for b in done:  # no model here: rule-based, still grounded on the region
        assert b["explanations"][0]["bbox"] == SERVICE_REGION["bbox"] and b["explanations"][0]["location"] == "top"
        assert b["explanations"][0]["source"] == "fallback"
    assert service.counters["skipped"] == 3 and service.counters["done"] == 2
    assert not list(recipe.assistant.spool.iterdir())  # every job's files are gone: nothing lost silently, nothing left
    status = [m.json for m in rec.on("/status/assistant") if "counters" in m.json]
    assert status and status[-1]["counters"]["skipped"] == 3
    assert rec.on("/status/assistant")[-1].json["state"] == "stopped"


def test_mqtt_result_and_cmd_generate_are_served(assistant_recipe_path, mosquitto_broker, mqtt_recorder, assistant_ng_image, tmp_path) -> None:
    recipe = load_recipe(assistant_recipe_path())
    rec = mqtt_recorder(mosquitto_broker, "iad/#")
    service, bus = _service_with_bus(recipe, mosquitto_broker)
    entry = tmp_path / "archive" / "2026-11-25" / "entry_7_NG"
    entry.mkdir(parents=True)
    cv2.imwrite(str(entry / "frame.png"), read_image(assistant_ng_image))
    plc = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    plc.connect(mosquitto_broker.host, mosquitto_broker.port)
    plc.loop_start()
    try:
        root = recipe.topic_root
        result = dict(_ng_job(7), archive=str(entry), fail_safe=False)
        plc.publish(f"{root}/result", json.dumps(result), qos=1).wait_for_publish(5)
        plc.publish(f"{root}/result", json.dumps(dict(result, trigger_id=8, verdict="OK")), qos=1).wait_for_publish(5)
        plc.publish(f"{root}/cmd/generate", json.dumps({"request_id": "r1", "image": str(assistant_ng_image),
                                                        "type": "stain", "seed": 5}), qos=1).wait_for_publish(5)
        plc.publish(f"{root}/cmd/generate", json.dumps({"request_id": "r2", "image": "/etc/hostname",
                                                        "type": "stain"}), qos=1).wait_for_publish(5)
        plc.publish(f"{root}/cmd/generate", json.dumps({"request_id": "r3", "type": "stain", "colour": "red"}),
                    qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10  # MQTT jobs go through the spool (durable like the lane's)
        while len(list(recipe.assistant.spool.glob("*.json"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(recipe.assistant.spool.glob("*.json"))) == 3  # result 7, generate r1 and r2 (r3 is refused)
        give_up = threading.Timer(60, lambda: stop.set())  # a lost job fails this test, never hangs it
        stop = threading.Event()
        give_up.start()
        try:
            assert service.run(stop, max_jobs=3) == 3
        finally:
            give_up.cancel()
        assert rec.wait_for(lambda m: len([x for x in m if x.topic.endswith("/generation")]) >= 2
                            and any(x.topic.endswith("/explanation") for x in m)
                            and any(x.topic.endswith("/cmd/generate/result") for x in m), 20)
    finally:
        plc.loop_stop()
        plc.disconnect()
        bus.stop()
    explanations = [m.json for m in rec.on("/explanation")]
    assert [e["trigger_id"] for e in explanations] == [7]  # the OK result is not a job
    assert json.loads((entry / "explanation.json").read_text())["trigger_id"] == 7  # beside the archived frame
    gens = {m.json["request_id"]: m.json for m in rec.on("/generation")}
    assert gens["r1"]["status"] == "done" and gens["r1"]["defect_type"] == "stain"
    out, mask = read_image(gens["r1"]["image"]), read_image(gens["r1"]["mask"]) > 0
    src = read_image(assistant_ng_image)
    far = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(out[far], src[far]) and (out != src).any(axis=2)[mask].mean() > 0.9
    assert assistant_ng_image.is_file()  # the request's source image is never the spool's to delete
    rejected = [m.json for m in rec.on("/cmd/generate/result")]
    assert len(rejected) == 1 and rejected[0]["ok"] is False and rejected[0]["request_id"] == "r3"
    assert "colour" in rejected[0]["error"] and "r3" not in gens  # a malformed request never becomes a job
    assert gens["r2"]["status"] == "failed" and "outside the folders a generation request may read" in gens["r2"]["reason"]


def test_jobs_claimed_by_a_crashed_assistant_are_retried_once(assistant_recipe_path, assistant_collector) -> None:
    recipe = load_recipe(assistant_recipe_path())
    write_job(recipe.assistant.spool, _ng_job(1))
    SpoolReader(recipe.assistant.spool).claim_new()  # claimed ... and the process died
    first = AssistantService(recipe, publish=assistant_collector)
    first.recover()
    assert len(first.backlog) == 1  # retried
    # it died again while holding the job: the next start gives up and says so
    second = AssistantService(recipe, publish=assistant_collector)
    second.recover()
    assert len(second.backlog) == 0
    failed = [b for b in assistant_collector.on("/explanation") if b["status"] == "failed"]
    assert [b["trigger_id"] for b in failed] == [1] and "stopped twice" in failed[0]["reason"]
    assert not list(recipe.assistant.spool.glob("*.work"))


def test_self_test_injects_a_generated_defect_off_the_decision_path_and_reports_on_status(assistant_recipe_path, assistant_collector) -> None:
    from edge.sources.synthetic import SyntheticPartRenderer

    recipe = load_recipe(assistant_recipe_path())
    service = AssistantService(recipe, publish=assistant_collector)
    renderer = SyntheticPartRenderer(224, 224, 3, seed=3)
    for i in range(4):  # good live frames, as the lane's spool writer hands them over
        write_job(recipe.assistant.spool, {"kind": "selftest", "session": "s", "trigger_id": 100 + i},
                  renderer.render(1000 + i, defect=None).image)
    service.poll_spool()
    service.run(threading.Event(), max_jobs=4)
    status = [b for b in assistant_collector.on("/status/assistant") if "self_test" in b]
    assert status, "no self-test outcome on status"
    outcome = status[-1]["self_test"]
    assert outcome["caught"] is True and outcome["verdict"] == "NG" and outcome["trigger_id"] == 103
    assert service.counters["selftest_caught"] == 4  # measured: 12/12 caught on this synthetic part
    assert not assistant_collector.on("/explanation") and not assistant_collector.on("/generation")


def test_clean_stop_hands_waiting_jobs_back_unclaimed(assistant_recipe_path, assistant_collector) -> None:
    recipe = load_recipe(assistant_recipe_path())
    for trigger in range(3):
        write_job(recipe.assistant.spool, _ng_job(trigger))
    service = AssistantService(recipe, publish=assistant_collector)
    service.poll_spool()
    service.run(threading.Event(), max_jobs=1)  # one done, then a clean stop
    assert len(list(recipe.assistant.spool.glob("*.json"))) == 2 and not list(recipe.assistant.spool.glob("*.work"))
    again = AssistantService(recipe, publish=assistant_collector)
    again.recover()
    assert len(again.backlog) == 0 and again.poll_spool() == 2  # new jobs, not retries
    assert all(int(j.body["attempts"]) == 0 for j in again.backlog._jobs)


def test_the_assistant_recycles_itself_after_its_job_quota(assistant_recipe_path, tmp_path) -> None:
    """recycle_after_jobs: the process exits 75 after that many jobs, so its supervisor starts a fresh one."""
    from edge.cli import main as cli_main
    from edge.commands.assistant import RECYCLE_EXIT_CODE

    path = assistant_recipe_path(recycle_after_jobs=2, max_tokens=32)
    recipe = load_recipe(path)
    for trigger in (1, 2, 3):
        write_job(Path(recipe.assistant.spool), dict(_ng_job(trigger), kind="explain"))
    assert cli_main(["assistant", str(path), "--no-mqtt"]) == RECYCLE_EXIT_CODE
    left = list(Path(recipe.assistant.spool).glob("*.json"))
    assert len(left) == 1  # the third job waits, unclaimed, for the next process

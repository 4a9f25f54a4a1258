"""Prometheus metrics of a running station, scraped over HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest

from edge.config import load_recipe
from edge.errors import IadError
from edge.plant.metrics import AssistantStatusFeed, StationMetrics, reason_class
from edge.station import Station, StationOptions
from tests.fixtures.expert import write_recipe

parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client (plant extra)")


def _scrape(port: int) -> dict[str, list]:
    """{family name: [samples]} from /metrics, parsed by the client library's parser."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {family.name: family.samples for family in parser.text_string_to_metric_families(text)}


def _value(families: dict, sample_name: str, **labels: str) -> float:
    for family in families.values():
        for sample in family:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {sample_name} {labels}")


def test_a_running_station_serves_its_metrics(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker):
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, {"metrics": {"port": 0}}))
    station = Station(recipe, StationOptions(mqtt_port=mosquitto_broker.port)).build()
    assert station.link is not None and station.link.wait_connected(10)
    frames = 8
    station.start(frames)
    try:
        assert station.wait(60)
        port = station.plant.metrics.port
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            families = _scrape(port)
            if _value(families, "iad_decision_latency_seconds_count") == frames:
                break
            time.sleep(0.1)
        counters = station.lane.counters.snapshot()
    finally:
        station.stop()
    assert _value(families, "iad_decision_latency_seconds_count") == frames
    assert _value(families, "iad_decisions_total", verdict="OK") == counters["ok"]
    assert _value(families, "iad_decisions_total", verdict="NG") == counters["ng"]
    assert counters["ok"] + counters["ng"] == frames
    assert _value(families, "iad_decision_latency_seconds_bucket", le="+Inf") == frames
    assert _value(families, "iad_fail_safe_decisions_total", reason="queue_full") == 0
    assert _value(families, "iad_frames_total") == frames
    assert _value(families, "iad_frames_dropped_total") == 0
    assert _value(families, "iad_frames_incomplete_total") == 0
    assert _value(families, "iad_queue_depth", queue="inspect") >= 0
    assert _value(families, "iad_outbox_rows") >= 0
    assert _value(families, "iad_outbox_oldest_age_seconds") >= 0
    assert _value(families, "iad_mqtt_connected") == 1
    assert _value(families, "iad_decision_delivery_total", delivery="sent") == frames
    assert _value(families, "iad_recipe_info", recipe_sha256=recipe.sha256, station="st1") == 1
    with pytest.raises(OSError):  # the endpoint goes away with the station
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_fail_safe_reasons_and_the_assistant_figures(tmp_path, tiny_expert_dir, mosquitto_broker):
    import paho.mqtt.client as mqtt

    from edge.types import Decision

    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir))
    status = {"state": "online", "backlog": 3, "capacity": 8, "self_test": {"status": "done", "caught": True},
              "counters": {"received": 9, "done": 5, "skipped": 1, "failed": 0, "selftest_caught": 2, "selftest_missed": 1}}
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    client.connect(mosquitto_broker.host, mosquitto_broker.port)
    client.loop_start()
    client.publish(f"{recipe.topic_root}/status/assistant", json.dumps(status), qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()

    class _Lane:  # the figures a lane offers, without frames (the station test above covers a real lane)
        from edge.lane.counters import Counters

        def __init__(self) -> None:
            self.counters = self.Counters()
            self.recipe, self.engine_sha256, self.source, self.outbox, self.link, self.archive = recipe, None, None, None, None, None

        def queue_depths(self) -> dict[str, int]:
            return {"inspect": 0, "post": 0}

    feed = AssistantStatusFeed(recipe, mosquitto_broker.host, mosquitto_broker.port)
    metrics = StationMetrics(_Lane(), assistant_feed=feed)
    port = metrics.serve(0)
    try:
        now = time.time()
        for reason in ("inspection queue full (4 frames waiting)", "acquisition: timeout", "bad frame: 0x0 image",
                       "decision window exceeded (2300 ms > 2000 ms; inspection said OK)", "something new"):
            metrics.observe(None, None, Decision(1, "NG", reason, None, now - 2.3, now, 2000.0, fail_safe=True, delivery="late"))
        deadline = time.monotonic() + 10
        while feed.latest is None and time.monotonic() < deadline:
            time.sleep(0.05)
        families = _scrape(port)
        with pytest.raises(IadError, match="metrics.port"):  # the same port twice: one clear line
            StationMetrics(_Lane()).serve(port)
    finally:
        metrics.close()
    for label in ("queue_full", "acquisition", "bad_frame", "window_exceeded", "other"):
        assert _value(families, "iad_fail_safe_decisions_total", reason=label) == 1
    assert _value(families, "iad_fail_safe_decisions_total", reason="inspection_failed") == 0
    assert _value(families, "iad_decision_latency_seconds_bucket", le="2.0") == 0
    assert _value(families, "iad_decision_latency_seconds_bucket", le="5.0") == 5
    assert _value(families, "iad_assistant_backlog") == 3
    assert _value(families, "iad_assistant_jobs_total", outcome="skipped") == 1
    assert _value(families, "iad_assistant_selftest_total", outcome="missed") == 1
    assert _value(families, "iad_assistant_selftest_caught") == 1


def test_reason_classes_are_bounded():
    assert reason_class("decision window exceeded before inspection (waited 2100 ms, window 2000 ms)") == "window_before_inspection"
    assert reason_class("inspection failed: RuntimeError: boom") == "inspection_failed"
    assert reason_class("") == "other"

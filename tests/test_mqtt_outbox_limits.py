"""The outbox is capped (rows, bytes, age), counts what it drops, drains fresh results first and never
hands results to the socket while a frame's decision is due (real SQLite, real mosquitto)."""

from __future__ import annotations

import json
import time

from edge.config.mqtt import MqttConfig, OutboxLimitsConfig
from edge.mqtt.client import MqttLink
from edge.mqtt.outbox import Outbox
from edge.mqtt.topics import Topics


def _limits(**kw) -> OutboxLimitsConfig:  # type: ignore[no-untyped-def]
    return OutboxLimitsConfig(**{"max_rows": None, "max_mb": None, "max_age_h": None, **kw})


def test_row_cap_drops_the_oldest_and_counts_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / "o.sqlite", limits=_limits(max_rows=5))
    for i in range(8):
        box.put("t", f"m{i}".encode())
    assert box.count() == 5 and box.dropped == {"rows": 3, "bytes": 0, "age": 0}
    assert box.oldest_created() == min(r.created for r in box.pending(10))  # the oldest, whatever the drain order
    assert [r.payload for r in box.pending(10)] == [b"m7", b"m6", b"m5", b"m4", b"m3"]  # newest first
    box.close()


def test_byte_cap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / "o.sqlite", limits=_limits(max_mb=1000 / 1024 / 1024))  # 1000 bytes
    for i in range(10):
        box.put("t", bytes([i]) * 300)
    assert box.count() == 3 and box.stats()["bytes"] == 900
    assert box.dropped["bytes"] == 7
    box.close()


def test_age_cap_also_applies_to_a_file_left_by_an_outage(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3 * 3600)  # written three hours ago
    box = Outbox(tmp_path / "o.sqlite", limits=_limits())
    for _ in range(4):
        box.put("t", b"old")
    box.close()
    monkeypatch.setattr(time, "time", real)
    box = Outbox(tmp_path / "o.sqlite", limits=_limits(max_age_h=2))
    assert box.count() == 0 and box.dropped["age"] == 4
    box.put("t", b"new")
    assert [r.payload for r in box.pending(10)] == [b"new"]
    box.close()


def test_oldest_first_keeps_trigger_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / "o.sqlite", limits=_limits(drain="oldest_first"))
    ids = [box.put("t", f"m{i}".encode()) for i in range(4)]
    assert [r.payload for r in box.pending(10, exclude={ids[0]})] == [b"m1", b"m2", b"m3"]
    box.close()


def test_default_caps_are_on() -> None:
    limits = MqttConfig().outbox_limits
    assert limits.max_rows and limits.max_mb and limits.max_age_h and limits.drain == "newest_first"


def _link(broker, box, **kw):  # type: ignore[no-untyped-def]
    cfg = MqttConfig(host=broker.host, port=broker.port, keepalive_s=2)
    return MqttLink(cfg, Topics("iad/t/s1"), box, client_id="iad-test-outbox", backoff_s=(0.1, 0.2),
                    status_provider=lambda: {}, **kw)


def test_after_an_outage_fresh_results_come_first_and_drops_are_on_status(tmp_path, mosquitto_broker, mqtt_recorder) -> None:  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / "o.sqlite", limits=_limits(max_rows=50))
    for i in range(60):  # the backlog of an outage, 10 over the cap
        box.put("iad/t/s1/result", json.dumps({"n": i}).encode())
    rec = mqtt_recorder(mosquitto_broker, "iad/t/s1/#")
    link = _link(mosquitto_broker, box, max_inflight_results=5).start()
    try:
        assert link.wait_connected(10)
        assert rec.wait_for(lambda m: len(rec.on("/result")) >= 50, 20)
        got = [x.json["n"] for x in rec.on("/result")]
        assert got[0] == 59 and sorted(set(got)) == list(range(10, 60))  # newest first; the 10 oldest dropped
        link.publish_status("online")
        assert rec.wait_for(lambda m: any(x.json.get("mqtt", {}).get("outbox_dropped") == 10 for x in rec.on("/status")), 10)
        status = [x.json for x in rec.on("/status") if x.json.get("mqtt", {}).get("outbox_dropped") == 10][-1]
        assert status["mqtt"]["outbox_dropped_by"] == {"rows": 10, "bytes": 0, "age": 0}
    finally:
        link.stop(drain_timeout_s=1)
        box.close()


def test_results_wait_while_a_frame_is_in_flight(tmp_path, mosquitto_broker, mqtt_recorder) -> None:  # type: ignore[no-untyped-def]
    import threading

    busy = threading.Event()
    box = Outbox(tmp_path / "o.sqlite", limits=_limits())
    rec = mqtt_recorder(mosquitto_broker, "iad/t/s1/#")
    link = _link(mosquitto_broker, box)
    link.hold_results = busy.is_set
    link.max_hold_s = 5.0
    link.start()
    try:
        assert link.wait_connected(10)
        busy.set()  # a frame is in flight
        for i in range(10):
            box.put("iad/t/s1/result", json.dumps({"n": i}).encode())
            link.notify_result()
        assert link.publish_decision(b'{"trigger_id":1}', remaining_s=1.0) == "sent"
        assert rec.wait_for(lambda m: len(rec.on("/decision")) == 1, 10)
        time.sleep(0.3)
        assert rec.on("/result") == [] and box.count() == 10  # nothing drained ahead of the decision
        busy.clear()  # the decision is out
        assert rec.wait_for(lambda m: len(rec.on("/result")) == 10, 10)
        order = [x.topic.rsplit("/", 1)[1] for x in rec.messages if not x.topic.endswith("/status")]
        assert order[0] == "decision"
    finally:
        link.stop(drain_timeout_s=1)
        box.close()

"""MQTT link and outbox against a real mosquitto: PUBACK-driven deletion, outages, status."""

from __future__ import annotations

import json
import time

from edge.config.mqtt import MqttConfig, OutboxLimitsConfig
from edge.mqtt.client import MqttLink
from edge.mqtt.outbox import Outbox
from edge.mqtt.topics import Topics


def _link(broker, outbox, root="iad/t/s1", **kw):
    cfg = MqttConfig(host=broker.host, port=broker.port, keepalive_s=2)
    return MqttLink(cfg, Topics(root), outbox, client_id="iad-test-lane", backoff_s=(0.1, 0.2),
                    status_provider=lambda: {"counters": {"frames": 3}}, **kw).start()


def test_outbox_is_fifo_and_survives_reopen(tmp_path):
    fifo = OutboxLimitsConfig(drain="oldest_first")
    box = Outbox(tmp_path / "o.sqlite", limits=fifo)
    ids = [box.put("t", f"m{i}".encode()) for i in range(5)]
    box.delete(ids[1])
    box.close()
    box = Outbox(tmp_path / "o.sqlite", limits=fifo)
    assert [r.payload for r in box.pending(10)] == [b"m0", b"m2", b"m3", b"m4"]
    assert [r.payload for r in box.pending(10, after_id=ids[2])] == [b"m3", b"m4"]
    box.close()
    assert [r.payload for r in Outbox(tmp_path / "o.sqlite").pending(10)] == [b"m4", b"m3", b"m2", b"m0"]  # default


def test_results_are_deleted_only_after_puback_and_drain_in_order_after_outage(tmp_path, mosquitto_broker, mqtt_recorder):
    rec = mqtt_recorder(mosquitto_broker, "iad/t/s1/#")
    box = Outbox(tmp_path / "o.sqlite", limits=OutboxLimitsConfig(drain="oldest_first"))
    link = _link(mosquitto_broker, box)
    try:
        assert link.wait_connected(10)
        for i in range(5):
            box.put("iad/t/s1/result", json.dumps({"n": i}).encode())
            link.notify_result()
        assert rec.wait_for(lambda m: len([x for x in m if x.topic.endswith("/result")]) == 5)
        assert rec.wait_for(lambda m: box.count() == 0, 5)

        mosquitto_broker.stop()
        assert rec.wait_for(lambda m: not link.connected, 10)
        # While the broker is away: decisions are refused (never queued), results wait on disk.
        assert link.publish_decision(b"late?", remaining_s=5.0) == "disconnected"
        for i in range(5, 12):
            box.put("iad/t/s1/result", json.dumps({"n": i}).encode())
            link.notify_result()
        time.sleep(0.3)
        assert box.count() == 7

        mosquitto_broker.start()
        assert rec.connected.wait(10) and link.wait_connected(10)
        assert rec.wait_for(lambda m: len([x for x in m if x.topic.endswith("/result")]) >= 12, 20)
        got = [x.json["n"] for x in rec.on("/result")]
        assert got == list(range(12))  # in order, nothing lost, nothing doubled
        assert rec.wait_for(lambda m: box.count() == 0, 5)
        assert not rec.on("/decision")
        assert link.reconnects == 1
    finally:
        link.stop(drain_timeout_s=1)
        box.close()


def test_decision_carries_expiry_and_status_goes_online_then_stopped(tmp_path, mosquitto_broker, mqtt_recorder):
    rec = mqtt_recorder(mosquitto_broker, "iad/t/s1/#")
    box = Outbox(tmp_path / "o.sqlite")
    link = _link(mosquitto_broker, box)
    assert link.wait_connected(10)
    assert link.publish_decision(b'{"trigger_id":1}', remaining_s=0.15) == "sent"
    assert link.publish_decision(b'{"trigger_id":2}', remaining_s=-0.01) == "late"
    assert rec.wait_for(lambda m: len([x for x in m if x.topic.endswith("/decision")]) == 1)
    decision = rec.on("/decision")[0]
    assert decision.expiry_s == 1 and decision.json == {"trigger_id": 1}
    assert rec.wait_for(lambda m: any(x.topic.endswith("/status") and x.json["state"] == "online" for x in m))
    online = [x for x in rec.on("/status") if x.json["state"] == "online"][0]
    assert online.json["counters"] == {"frames": 3}
    link.stop(drain_timeout_s=1)
    box.close()
    assert rec.wait_for(lambda m: any(x.topic.endswith("/status") and x.json["state"] == "stopped" for x in m))
    # The retained status a newly connecting PLC sees is 'stopped', not the LWT.
    late = mqtt_recorder(mosquitto_broker, "iad/t/s1/status")
    assert late.wait_for(lambda m: len(m) >= 1, 5)
    assert late.messages[-1].retain and late.messages[-1].json["state"] == "stopped"

"""The demo waits for the assistant's ready and counts only explanations that really arrived (real mosquitto)."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt

from edge.commands.demo import _Explanations, _wait_assistant_ready


def _publish(broker, topic, body, retain=False):
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, json.dumps(body), qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_a_skipped_explanation_is_not_counted_as_received(mosquitto_broker):
    topic = "iad/demo/station1/explanation"
    reader = _Explanations(mosquitto_broker.host, mosquitto_broker.port, topic)
    try:
        _publish(mosquitto_broker, topic, {"trigger_id": 0, "status": "skipped", "reason": "backlog full (8 jobs)"})
        _publish(mosquitto_broker, topic, {"trigger_id": 3, "status": "done", "explanations": []})
        missing = reader.wait_for({0, 3, 5}, 3.0)
        assert missing == {5}
        line = reader.summary({0, 3, 5}, missing)
        assert line.startswith("explanations received for 1/3 NG parts")  # not 2/3: #0 was dropped, not explained
        assert "#0 skipped" in line and "[5]" in line
    finally:
        reader.close()


def test_the_demo_waits_for_a_fresh_online_status_of_the_assistant(mosquitto_broker):
    topic = "iad/demo/station1/status/assistant"
    _publish(mosquitto_broker, topic, {"state": "online", "time": time.time() - 600}, retain=True)  # a previous run's
    since = time.time()
    assert not _wait_assistant_ready(mosquitto_broker.host, mosquitto_broker.port, topic, since, 1.0)
    _publish(mosquitto_broker, topic, {"state": "online", "time": time.time()}, retain=True)
    assert _wait_assistant_ready(mosquitto_broker.host, mosquitto_broker.port, topic, since, 5.0)

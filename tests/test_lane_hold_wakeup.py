"""Results held behind a frame in flight go out when its decision is out, without the drainer polling meanwhile."""

from __future__ import annotations

import threading
import time

from edge.config.mqtt import MqttConfig
from edge.mqtt.client import MqttLink
from edge.mqtt.outbox import Outbox
from edge.mqtt.topics import Topics


def test_held_result_is_released_by_the_wakeup_not_by_polling(tmp_path, mosquitto_broker, mqtt_recorder):
    rec = mqtt_recorder(mosquitto_broker, "iad/t/s1/result")
    busy = threading.Event()
    outbox = Outbox(tmp_path / "o.sqlite")
    link = MqttLink(MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port), Topics("iad/t/s1"), outbox,
                    client_id="iad-test-hold", backoff_s=(0.1, 0.2))
    checks: list[float] = []  # every time the drainer asks whether to hold

    def hold() -> bool:
        checks.append(time.monotonic())
        return busy.is_set()

    link.hold_results = hold
    link.max_hold_s = 30.0  # only the wake-up can release it within this test
    link.start()
    try:
        assert link.wait_connected(10)
        busy.set()  # a frame is in flight
        outbox.put("iad/t/s1/result", b'{"n": 1}')
        link.notify_result()
        time.sleep(0.2)
        first = len(checks)
        time.sleep(1.0)
        assert not rec.messages, "a result went to the socket while a frame was in flight"
        assert len(checks) - first <= 3, f"the drainer woke {len(checks) - first} times in 1 s while holding (polling)"
        released = time.monotonic()
        busy.clear()
        link.notify_result()  # what Lane._set_busy(False) does
        assert rec.wait_for(lambda msgs: len(msgs) == 1, 5)
        assert time.monotonic() - released < 2.0
    finally:
        link.stop(2)
        outbox.close()


def test_a_hold_past_its_limit_with_nothing_to_send_does_not_spin(tmp_path, mosquitto_broker):
    busy = threading.Event()
    outbox = Outbox(tmp_path / "o.sqlite")
    link = MqttLink(MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port), Topics("iad/t/s1"), outbox,
                    client_id="iad-test-hold-expired", backoff_s=(0.1, 0.2))
    checks: list[float] = []

    def hold() -> bool:
        checks.append(time.monotonic())
        return busy.is_set()

    link.hold_results = hold
    link.max_hold_s = 0.1
    link.start()
    try:
        assert link.wait_connected(10)
        busy.set()  # a long frame (or a saturated lane): the hold expires, the outbox is empty
        outbox.put("iad/t/s1/result", b'{"n": 1}')
        link.notify_result()
        time.sleep(0.5)  # the one result goes out after the hold expired
        first = len(checks)
        time.sleep(1.0)
        assert len(checks) - first <= 8, f"the drainer woke {len(checks) - first} times in 1 s with nothing to send"
        assert outbox.count() == 0
    finally:
        link.stop(2)
        outbox.close()

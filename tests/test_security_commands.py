"""cmd/...: schema validation, rate limiting, replies on cmd/<name>/result, and the lane keeps deciding through a flood."""

from __future__ import annotations

import json
import shutil
import time

import paho.mqtt.client as mqtt

from edge.config import load_recipe
from edge.mqtt.commands import CommandDispatcher, GenerateCommand, TokenBucket, lane_commands
from edge.station import Station, StationOptions
from tests.fixtures.expert import write_recipe

ROOT = "iad/testline/st1"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _dispatcher(**kw):
    sent: list[tuple[str, dict]] = []
    d = CommandDispatcher(ROOT, publish=lambda topic, payload: sent.append((topic, json.loads(payload))), **kw)
    return d, sent


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = _Clock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]
    clock.now = 0.5  # one token back
    assert [bucket.take() for _ in range(2)] == [True, False]


def test_malformed_unknown_and_invalid_commands_are_rejected_with_a_reply() -> None:
    d, sent = _dispatcher(rate_per_s=100, burst=100)
    d.register("ping", GenerateCommand.__base__, lambda cmd: {"pong": True})  # CommandModel: only request_id
    cases = {
        b"{not json": "not a JSON object",
        b"[1, 2]": "the body must be a JSON object (got list)",
        b'{"request_id": "r1", "extra": 1}': "extra: Extra inputs are not permitted",
        b'{"request_id": "has spaces!"}': "request_id: String should match pattern",
        b"\xff\xfe": "not a JSON object",
        b"{" + b" " * 20000 + b"}": "exceeds 16384",
    }
    for payload, reason in cases.items():
        reply = d.handle(f"{ROOT}/cmd/ping", payload)
        assert reply["status"] == "rejected" and reason in reply["reason"], (payload[:20], reply)
    reply = d.handle(f"{ROOT}/cmd/reboot", b"{}")
    assert reply["status"] == "rejected" and reply["reason"].startswith("unknown command 'reboot' (known: generate, ping)")
    assert sent[-1][0] == f"{ROOT}/cmd/reboot/result"
    assert d.counters["rejected"] == len(cases) + 1 and d.counters["accepted"] == 0
    ok = d.handle(f"{ROOT}/cmd/ping", b'{"request_id": "r-2"}')
    assert ok == {**ok, "status": "ok", "request_id": "r-2", "result": {"pong": True}}


def test_generate_is_validated_by_its_schema_and_left_to_the_assistant() -> None:
    d, sent = _dispatcher()
    assert d.handle(f"{ROOT}/cmd/generate", b'{"image": "x.png"}') is None and sent == []  # delegated: no reply here
    assert GenerateCommand.model_validate({"image": "x.png", "type": "scratch", "seed": 3}).seed == 3
    for bad in ({"seed": -1}, {"type": "Scratch; rm -rf"}, {"intensity": 99}, {"unknown": 1}):
        try:
            GenerateCommand.model_validate(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_a_failing_handler_is_answered_with_an_error_and_never_raises() -> None:
    d, sent = _dispatcher()

    def boom(cmd):
        raise RuntimeError("disk on fire")

    d.register("status", GenerateCommand.__base__, boom)
    reply = d.handle(f"{ROOT}/cmd/status", b"{}")
    assert reply["status"] == "error" and "RuntimeError: disk on fire" in reply["reason"]
    assert d.handle("other/topic", b"{}") is None and d.handle(f"{ROOT}/cmd/status/result", b"{}") is None


def test_a_flood_is_rate_limited_and_does_not_become_a_reply_flood() -> None:
    d, sent = _dispatcher(rate_per_s=2, burst=3)
    lane_commands(d, type("L", (), {"session": "s"})())
    replies = [d.handle(f"{ROOT}/cmd/ping", b"{}") for _ in range(200)]
    statuses = [r["status"] for r in replies if r is not None]
    assert statuses[:3] == ["ok", "ok", "ok"] and statuses.count("ok") <= 4
    assert d.counters["rate_limited"] >= 195
    assert len(sent) <= 6, len(sent)  # 3 ok + at most one rate_limited reply per second (+ refill during the loop)


def test_lane_keeps_deciding_while_commands_and_garbage_flood_in(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder) -> None:
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir))
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    station = Station(recipe, StationOptions(mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port,
                                             status_interval_s=0.5, commands=True, command_rate_per_s=5,
                                             command_burst=5)).build()  # what `iad-edge run` does
    lane, listener = station.lane, station.commands
    dispatcher = listener.dispatcher
    assert listener.connected.wait(10) and lane.link.wait_connected(10)
    attacker = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv5)
    attacker.connect(mosquitto_broker.host, mosquitto_broker.port)
    attacker.loop_start()
    try:
        lane.start(max_frames=8)
        garbage = [b"{", b"null", b'{"request_id": 5}', b"\x00" * 100, b'{"a":' * 500]
        for i in range(300):
            attacker.publish(f"{ROOT}/cmd/" + ("ping", "status", "reboot", "x" * 40)[i % 4], garbage[i % len(garbage)], qos=0)
        assert lane.wait(120)
        time.sleep(1.2)  # the bucket refills: the command path works again after the flood
        attacker.publish(f"{ROOT}/cmd/ping", b'{"request_id": "after-flood"}', qos=1).wait_for_publish(5)
    finally:
        lane.stop()  # the command listener keeps answering until station.stop() below
        attacker.loop_stop()
        attacker.disconnect()
    assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/result") and not "/cmd/" in x.topic]) == 8)
    assert [m.json["trigger_id"] for m in plc.on("/decision")] == list(range(8))
    time.sleep(1.2)
    replies = [m.json for m in plc.messages if "/cmd/" in m.topic and m.topic.endswith("/result")]
    assert replies and all(r["status"] in ("rejected", "rate_limited", "ok", "error") for r in replies)
    assert len(replies) < 100  # a reply flood would be ~300
    assert [r["status"] for r in replies if r["request_id"] == "after-flood"] == ["ok"]
    total = sum(dispatcher.counters[k] for k in ("accepted", "rejected", "rate_limited", "errors"))
    assert total >= 250, dispatcher.counters  # QoS 0 loopback: (nearly) all arrived and were handled
    station.stop()

"""Sparkplug B edge node against a real mosquitto, read back with an independent decoder.

The station encodes with pysparkplug; the tests decode with protobuf classes compiled
from a spec-derived .proto (tests/fixtures/plant.py), so both sides must agree on the wire.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import load_recipe
from edge.plant.sparkplug import DEVICE_METRICS, REBIRTH, BdSeq, SparkplugNode
from edge.types import Decision
from tests.fixtures.expert import write_recipe

REPO = Path(__file__).resolve().parents[1]
GROUP, NODE, DEVICE = "plantA", "line7-st1", "st1"
TOPIC = f"spBv1.0/{GROUP}"

pytest.importorskip("pysparkplug", reason="pysparkplug (plant extra) encodes the payloads")


def _kind(topic: str) -> str:
    return topic.split("/")[2]


def _sparkplug_recipe(tmp_path: Path, tiny_expert_dir: Path, **source: object) -> Path:
    return write_recipe(tmp_path, tiny_expert_dir, {
        "sparkplug": {"enabled": True, "group_id": GROUP, "edge_node_id": NODE, "device_id": DEVICE, "keepalive_s": 1},
        "source": {"type": "synthetic", "width": 224, "height": 224, "channels": 3, "defect_rate": 0.5, "seed": 3, **source},
    })


def _decision(trigger_id: int, verdict: str = "OK", fail_safe: bool = False) -> Decision:
    now = time.time()
    return Decision(trigger_id, verdict, "clean" if not fail_safe else "inspection queue full (4 frames waiting)",
                    0.12 + trigger_id / 1000, now - 0.02, now, 2000.0, fail_safe=fail_safe, region_count=trigger_id % 3)


def _publish(broker, topic: str, payload: bytes) -> None:
    """One QoS 1 message from a test SCADA host."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="iad-test-scada")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_station_births_before_data_rebirths_on_ncmd_and_dies_with_its_bdseq_on_sigkill(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder, sparkplug_decoder):
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = _sparkplug_recipe(tmp_path, tiny_expert_dir, rate_hz=10)
    (tmp_path / "sparkplug.bdseq").write_text("41\n")  # a previous run's next bdSeq
    scada = mqtt_recorder(mosquitto_broker, f"{TOPIC}/#", "iad/testline/st1/decision")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(recipe), "--mqtt-port", str(mosquitto_broker.port),
                             "--quiet", "--no-watch"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert scada.wait_for(lambda m: sum(_kind(x.topic) == "DDATA" for x in m if x.topic.startswith("spBv1.0")) >= 5, 90), \
            proc.stderr.read1().decode(errors="replace")[-2000:] if proc.poll() is not None else "no DDATA"
        spb = [m for m in scada.messages if m.topic.startswith("spBv1.0")]
        kinds = [_kind(m.topic) for m in spb]
        assert kinds[:2] == ["NBIRTH", "DBIRTH"], kinds[:5]  # birth before data
        assert spb[0].topic == f"{TOPIC}/NBIRTH/{NODE}" and spb[1].topic == f"{TOPIC}/DBIRTH/{NODE}/{DEVICE}"
        nbirth, dbirth = sparkplug_decoder.decode(spb[0].payload), sparkplug_decoder.decode(spb[1].payload)
        assert nbirth["seq"] == 0 and dbirth["seq"] == 1
        assert nbirth["metrics"]["bdSeq"] == {"datatype": "UInt64", "value": 41, "is_null": False,
                                              "timestamp": nbirth["metrics"]["bdSeq"]["timestamp"]}
        assert nbirth["metrics"][REBIRTH]["datatype"] == "Boolean" and nbirth["metrics"][REBIRTH]["value"] is False
        # DBIRTH lists every device metric with its datatype
        assert {n: m["datatype"] for n, m in dbirth["metrics"].items()} == {n: dt.name.title().replace("Uint", "UInt")
                                                                           for n, dt in DEVICE_METRICS}
        ddata = [sparkplug_decoder.decode(m.payload) for m in spb if _kind(m.topic) == "DDATA"]
        assert [d["seq"] for d in ddata] == [(2 + i) % 256 for i in range(len(ddata))]
        plc = {m.json["trigger_id"]: m.json for m in scada.on("/decision")}
        first = ddata[0]["metrics"]
        assert first["Decision/Trigger ID"]["value"] in plc
        same = plc[first["Decision/Trigger ID"]["value"]]
        assert first["Decision/Verdict"]["value"] == same["verdict"]
        assert first["Decision/NG"]["value"] == (same["verdict"] == "NG")
        assert first["Decision/Score"]["value"] == pytest.approx(same["score"], abs=1e-4)
        assert first["Counters/Decisions"]["value"] >= 1
        assert first["Recipe/SHA256"]["value"] == load_recipe(recipe).sha256

        # SCADA asks for a rebirth: NBIRTH (seq 0, same bdSeq) and DBIRTH again
        before = len(scada.messages)
        _publish(mosquitto_broker, f"{TOPIC}/NCMD/{NODE}", sparkplug_decoder.encode_ncmd({REBIRTH: (11, True)}))
        assert scada.wait_for(lambda m: any(_kind(x.topic) == "DBIRTH" for x in m[before:]), 10)
        again = [m for m in scada.messages[before:] if m.topic.startswith("spBv1.0") and _kind(m.topic) in ("NBIRTH", "DBIRTH")]
        assert [_kind(m.topic) for m in again][:2] == ["NBIRTH", "DBIRTH"]
        reborn = sparkplug_decoder.decode(again[0].payload)
        assert reborn["seq"] == 0 and reborn["metrics"]["bdSeq"]["value"] == 41

        # The station vanishes: the broker publishes the will, NDEATH with the same bdSeq
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert scada.wait_for(lambda m: any(_kind(x.topic) == "NDEATH" for x in m if x.topic.startswith("spBv1.0")), 15)
        death = next(m for m in scada.messages if m.topic.startswith("spBv1.0") and _kind(m.topic) == "NDEATH")
        assert death.topic == f"{TOPIC}/NDEATH/{NODE}"
        decoded = sparkplug_decoder.decode(death.payload)
        assert decoded["metrics"]["bdSeq"]["value"] == 41 and decoded["metrics"]["bdSeq"]["datatype"] == "UInt64"
        assert decoded["seq"] is None  # NDEATH carries no seq
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    assert (tmp_path / "sparkplug.bdseq").read_text().strip() == "42"  # the next connection gets the next bdSeq


def test_seq_wraps_at_255_and_a_clean_stop_sends_ndeath(tmp_path, tiny_expert_dir, mosquitto_broker, mqtt_recorder,
                                                         sparkplug_decoder):
    recipe = load_recipe(_sparkplug_recipe(tmp_path, tiny_expert_dir))
    scada = mqtt_recorder(mosquitto_broker, f"{TOPIC}/#")
    counters = {"decisions": 0}
    node = SparkplugNode(recipe, counters=lambda: dict(counters), hashes=lambda: ("r" * 64, None),
                         host=mosquitto_broker.host, port=mosquitto_broker.port).start()
    try:
        assert node.wait_connected(10)
        for trigger in range(300):
            counters["decisions"] = trigger + 1
            node.observe(None, None, _decision(trigger, "NG" if trigger % 2 else "OK", fail_safe=trigger == 7))
            if trigger % 50 == 49:
                time.sleep(0.05)  # let the worker keep up with the bounded queue
        assert scada.wait_for(lambda m: sum(_kind(x.topic) == "DDATA" for x in m) >= 300 - node.skipped, 20)
    finally:
        node.stop()
    assert node.skipped == 0
    assert scada.wait_for(lambda m: any(_kind(x.topic) == "NDEATH" for x in m), 5)
    ddata = [sparkplug_decoder.decode(m.payload) for m in scada.messages if _kind(m.topic) == "DDATA"]
    seqs = [d["seq"] for d in ddata]
    assert seqs[:3] == [2, 3, 4] and max(seqs) == 255
    assert seqs == [(2 + i) % 256 for i in range(300)]  # 0-255, wrapping
    seventh = ddata[7]["metrics"]
    assert seventh["Decision/Fail Safe"]["value"] is True and seventh["Decision/Reason"]["value"].startswith("inspection queue full")
    assert seventh["Engine/SHA256"]["is_null"] is True  # unknown values are explicit nulls, not empty strings
    nbirth = sparkplug_decoder.decode(next(m.payload for m in scada.messages if _kind(m.topic) == "NBIRTH"))
    death = sparkplug_decoder.decode(next(m.payload for m in scada.messages if _kind(m.topic) == "NDEATH"))
    assert death["metrics"]["bdSeq"]["value"] == nbirth["metrics"]["bdSeq"]["value"] == 0


def test_a_full_queue_skips_ddata_and_never_blocks_the_caller(tmp_path, tiny_expert_dir):
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, {"sparkplug": {"enabled": True, "queue_size": 4}}))
    node = SparkplugNode(recipe, host="127.0.0.1", port=1)  # not started: nothing drains the queue
    for trigger in range(10):
        node.observe(None, None, _decision(trigger))
    assert node.skipped == 6


def test_bdseq_survives_restarts_and_wraps(tmp_path):
    path = tmp_path / "bd"
    path.write_text("254\n")
    store = BdSeq(path)
    assert [store.next(), store.next()] == [254, 255]
    assert BdSeq(path).next() == 0
    (tmp_path / "garbage").write_text("not a number")
    assert BdSeq(tmp_path / "garbage").next() == 0

"""MQTT over TLS with a password file and an ACL: real mosquitto, certificates made in the test, the real lane."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest

from edge.config import load_recipe
from edge.mqtt.auth import MqttCredentialsError, read_password
from edge.mqtt.commands import CommandDispatcher, CommandListener, lane_commands
from edge.station import build_lane
from tests.fixtures.expert import write_recipe

ROOT = "iad/testline/st1"
ACL = f"""\
# anonymous clients: may read the station's status, nothing else
topic read {ROOT}/status

user iad
topic readwrite iad/#

user operator
topic write {ROOT}/cmd/+
topic read {ROOT}/cmd/+/result
topic read {ROOT}/decision
"""
USERS = {"iad": "lane-secret", "operator": "op-secret"}


def _tls_recipe(tmp_path: Path, expert_dir: Path, bank: Path, pki, broker, password: str, ca: Path | None = None,
                client_cert: bool = True):
    shutil.copy(bank, tmp_path / "bank.npz")
    (tmp_path / "mqtt.pw").write_text(password + "\n")
    (tmp_path / "mqtt.pw").chmod(0o600)
    tls = {"ca_file": str(ca or pki.ca)}
    if client_cert:
        tls.update(cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    return load_recipe(write_recipe(tmp_path, expert_dir, {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "iad", "password_file": "mqtt.pw", "tls": tls,
                 "outbox": "outbox.sqlite"},
    }))


def test_lane_connects_over_mutual_tls_with_the_password_file_and_decides(
        tmp_path, tiny_expert_dir, tiny_bank_path, deploy_tls_material, secure_mosquitto, tls_peer):
    broker = secure_mosquitto(USERS, ACL, require_certificate=True)
    recipe = _tls_recipe(tmp_path, tiny_expert_dir, tiny_bank_path, deploy_tls_material, broker, USERS["iad"])
    assert "lane-secret" not in (tmp_path / "recipe.yaml").read_text()  # the YAML only names the file
    plc = tls_peer(broker, "iad", USERS["iad"])
    assert plc.wait_connected(), plc.refused
    plc.subscribe(f"{ROOT}/#")
    lane = build_lane(recipe, status_interval_s=0.5)
    assert lane.link.wait_connected(15), lane.link.last_error
    counters = lane.run(max_frames=4)
    assert counters["decisions"] == 4 and counters["undelivered"] == 0
    assert plc.wait_for("/result", 4), plc.messages
    assert [json.loads(p)["trigger_id"] for p in plc.on("/decision")] == [0, 1, 2, 3]
    assert "Client iad-edge-testline-st1" in broker.log_text() or "iad-edge-testline-st1" in broker.log_text()


def test_wrong_password_is_refused_with_a_clear_log_line_and_nothing_is_delivered(
        tmp_path, tiny_expert_dir, tiny_bank_path, deploy_tls_material, secure_mosquitto, tls_peer, caplog):
    broker = secure_mosquitto(USERS, ACL)
    recipe = _tls_recipe(tmp_path, tiny_expert_dir, tiny_bank_path, deploy_tls_material, broker, "not-the-password")
    plc = tls_peer(broker, "iad", USERS["iad"])
    assert plc.wait_connected(), plc.refused
    plc.subscribe(f"{ROOT}/#")
    caplog.set_level(logging.WARNING, logger="edge.mqtt.client")
    lane = build_lane(recipe, status_interval_s=0.5)
    try:
        assert not lane.link.wait_connected(3)
        deadline = time.monotonic() + 10
        while "refused" not in (lane.link.last_error or "") and time.monotonic() < deadline:
            time.sleep(0.05)
        # mosquitto answers a bad password to an MQTT v5 client with reason 0x87 "Not authorized"
        assert lane.link.last_error == "broker refused the connection: Not authorized", lane.link.last_error
        assert any(f"{broker.port} refused: Not authorized" in r.getMessage() for r in caplog.records), \
            [r.getMessage() for r in caplog.records]
        lane.start(max_frames=3)
        assert lane.wait(60)
    finally:
        lane.stop(drain_timeout_s=0.5)
    counters = lane.counters.snapshot()
    assert counters["decisions"] == 3 and counters["undelivered"] == 3  # the lane kept deciding, fail-closed on the wire
    time.sleep(0.3)
    assert plc.on("/decision") == [] and plc.on("/result") == []


def test_a_broker_signed_by_another_ca_is_not_trusted(tmp_path, tiny_expert_dir, tiny_bank_path, deploy_tls_material,
                                                       secure_mosquitto):
    broker = secure_mosquitto(USERS, ACL)
    recipe = _tls_recipe(tmp_path, tiny_expert_dir, tiny_bank_path, deploy_tls_material, broker, USERS["iad"],
                         ca=deploy_tls_material.other_ca)
    lane = build_lane(recipe, status_interval_s=0.5)
    try:
        assert not lane.link.wait_connected(3)
        assert "CERTIFICATE_VERIFY_FAILED" in (lane.link.last_error or ""), lane.link.last_error
    finally:
        lane.stop(drain_timeout_s=0.2)


def test_without_a_client_certificate_the_broker_refuses(deploy_tls_material, secure_mosquitto, tls_peer):
    broker = secure_mosquitto(USERS, ACL, require_certificate=True)
    peer = tls_peer(broker, "iad", USERS["iad"], client_cert=False)
    assert not peer.wait_connected(3)


def test_anonymous_client_cannot_publish_commands_but_the_operator_can(
        deploy_tls_material, secure_mosquitto, tls_peer, tmp_path):
    broker = secure_mosquitto(USERS, ACL, allow_anonymous=True)
    pw = tmp_path / "pw"
    pw.write_text(USERS["iad"])
    pw.chmod(0o600)
    from edge.config.mqtt import MqttConfig

    cfg = MqttConfig(host=broker.host, port=broker.port, username="iad", password_file=pw,
                     tls={"ca_file": deploy_tls_material.ca})
    dispatcher = CommandDispatcher(ROOT, publish=lambda t, p: None)

    class _Lane:
        session = "s1"

    lane_commands(dispatcher, _Lane())
    listener = CommandListener(cfg, dispatcher, "iad-edge-testline-st1-cmd").start()
    try:
        assert listener.connected.wait(10), listener.last_error
        intruder = tls_peer(broker, client_cert=False)  # anonymous: no user name
        assert intruder.wait_connected(), intruder.refused
        assert intruder.publish(f"{ROOT}/cmd/ping", b'{"request_id": "evil"}') == "Not authorized"
        operator = tls_peer(broker, "operator", USERS["operator"], client_cert=False)
        assert operator.wait_connected(), operator.refused
        operator.subscribe(f"{ROOT}/cmd/+/result")
        assert operator.publish(f"{ROOT}/cmd/ping", b'{"request_id": "op-1"}') == "Success"
        assert operator.wait_for("/cmd/ping/result", 1)
        reply = json.loads(operator.on("/cmd/ping/result")[0])
        assert reply["status"] == "ok" and reply["request_id"] == "op-1"
        # the intruder's command never reached the appliance
        assert dispatcher.counters["accepted"] == 1 and dispatcher.counters["rejected"] == 0
    finally:
        listener.stop()


def test_password_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(MqttCredentialsError, match="does not exist"):
        read_password(tmp_path / "missing.pw")
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    with pytest.raises(MqttCredentialsError, match=f"{empty} is empty"):
        read_password(empty)
    good = tmp_path / "good.pw"
    good.write_text("  s3cret \nignored\n")
    assert read_password(good) == "s3cret"

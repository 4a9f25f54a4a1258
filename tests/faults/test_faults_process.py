"""Fault injection with real processes: `iad-edge run` as a child process, a real mosquitto, a subscriber as the PLC.

Each test injects one fault, asserts the guarantees (no late decision, no
result lost, the line keeps deciding) and records what was observed as one
row of the fault table (docs/faults.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.harness import Appliance, decisions, observe, results, statuses, wait_until
from tests.fixtures.expert import write_recipe

ROOT = "iad/testline/st1"


def _recipe(folder: Path, expert_dir: Path, bank: Path, **overrides) -> Path:
    shutil.copy(bank, folder / "bank.npz")
    base = {"source": {"rate_hz": 5.0}, "assistant": {"spool": "assistant-spool"}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return write_recipe(folder, expert_dir, base)


def _outbox_rows(path: Path) -> int:
    with sqlite3.connect(str(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_broker_killed_and_restarted(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder,
                                     fault_table) -> None:
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path)
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    app = Appliance(recipe, mosquitto_broker, tmp_path, "--max-frames", "30").start()
    try:
        assert wait_until(lambda: len(decisions(plc)) >= 5, 120), app.stderr()[-2000:]
        mosquitto_broker.kill()  # SIGKILL: no clean disconnects
        time.sleep(2.0)
        mosquitto_broker.start()
        assert app.wait(120) == 0, app.stderr()[-3000:]
    finally:
        app.kill()
    assert wait_until(lambda: len({r["trigger_id"] for r in results(plc)}) >= 30, 30)
    assert wait_until(lambda: any(s.get("state") == "stopped" for s in statuses(plc)), 10)
    row = observe(plc, "broker killed (SIGKILL) for 2 s, restarted", 30,
                  note="decisions during the outage are not sent (never late); their results wait in the outbox")
    row["outbox_rows_left"] = _outbox_rows(tmp_path / "outbox.sqlite")
    fault_table.append(row)
    assert row["decisions_late"] == 0
    assert row["results_unique"] == 30 and not row["results_gaps"]
    assert row["decisions_received"] < 30 and row["decision_not_delivered_ids"], "the outage should have cost decisions"
    assert set(row["decision_ids"]).isdisjoint(row["decision_not_delivered_ids"])
    assert row["status"]["state"] == "stopped" and row["status"]["decisions"] == 30 and row["status"]["reconnects"] >= 1
    assert row["outbox_rows_left"] == 0


def test_appliance_sigkilled_during_a_broker_outage_and_restarted(tmp_path, tiny_expert_dir, tiny_bank_path,
                                                                   mosquitto_broker, mqtt_recorder, fault_table) -> None:
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path)
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    first = Appliance(recipe, mosquitto_broker, tmp_path, name="first").start()
    try:
        assert wait_until(lambda: len(decisions(plc)) >= 4, 120), first.stderr()[-2000:]
        mosquitto_broker.stop()
        time.sleep(1.5)  # ~7 parts decided with the broker away: results go to the outbox only
        first.kill()
    finally:
        first.kill()
    stranded = _outbox_rows(tmp_path / "outbox.sqlite")
    first_session_ids = {r["trigger_id"] for r in results(plc)}
    mosquitto_broker.start()
    assert wait_until(lambda: plc.connected.is_set(), 10)
    second = Appliance(recipe, mosquitto_broker, tmp_path, "--max-frames", "5", name="second").start()
    try:
        assert second.wait(120) == 0, second.stderr()[-3000:]
    finally:
        second.kill()
    sessions = {}
    for r in results(plc):
        sessions.setdefault(r["session"], set()).add(r["trigger_id"])
    assert wait_until(lambda: len({(r["session"], r["trigger_id"]) for r in results(plc)}) >= len(first_session_ids) + stranded + 5, 20)
    row = observe(plc, "appliance SIGKILLed during a 1.5 s broker outage, broker and appliance restarted", None,
                  note=f"{stranded} results were stranded in the outbox at the kill; the next process sent them "
                       "(newest first, mqtt.outbox_limits.drain)")
    row["outbox_rows_at_kill"] = stranded
    row["outbox_rows_left"] = _outbox_rows(tmp_path / "outbox.sqlite")
    fault_table.append(row)
    assert stranded >= 3
    assert len(row["sessions"]) == 2 and not row["results_gaps"], row
    assert row["results_unique"] == len(first_session_ids) + stranded + 5
    assert row["decisions_late"] == 0 and row["outbox_rows_left"] == 0
    assert row["status"]["state"] == "stopped" and row["status"]["decisions"] == 5


def test_disk_full_for_the_archive(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder,
                                   fault_table) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs as the archive (a full disk); not root here")
    archive = tmp_path / "archive"
    archive.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(archive)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the disk-full fault needs one")
    try:
        recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, source={"rate_hz": None, "defect_rate": 1.0},
                         archive={"path": "archive", "ok_sample_rate": 1.0})
        plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
        app = Appliance(recipe, mosquitto_broker, tmp_path, "--max-frames", "12").start()
        try:
            assert app.wait(180) == 0, app.stderr()[-3000:]
        finally:
            app.kill()
        assert wait_until(lambda: any(s.get("state") == "stopped" for s in statuses(plc)), 10)
        usage = shutil.disk_usage(archive)
    finally:
        subprocess.run(["umount", "-l", str(archive)], capture_output=True)
    row = observe(plc, "archive disk full (200 kB tmpfs), every part archived", 12,
                  note="the archive writer reports the error on status; decisions and results are unaffected")
    row["archive_fs_free_bytes"] = usage.free
    fault_table.append(row)
    assert row["decisions_received"] == 12 and row["decisions_late"] == 0
    assert row["results_unique"] == 12 and not row["results_gaps"]
    assert row["status"]["archive_errors"] >= 1 and "disk full (ENOSPC)" in (row["status"]["archive"]["last_error"] or "")


def test_corrupt_engine_refuses_to_start_and_never_says_ready(tmp_path, tiny_expert_dir, tiny_bank_path,
                                                             mosquitto_broker, mqtt_recorder, deploy_notify_socket,
                                                             fault_table) -> None:
    engine = tmp_path / "engine"
    shutil.copytree(tiny_expert_dir, engine)
    data = bytearray((engine / "expert.onnx").read_bytes())
    data[len(data) // 3] ^= 0x01
    (engine / "expert.onnx").write_bytes(bytes(data))
    recipe = _recipe(tmp_path, engine, tiny_bank_path)
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    app = Appliance(recipe, mosquitto_broker, tmp_path, "--max-frames", "5",
                    env={"NOTIFY_SOCKET": deploy_notify_socket.path, "WATCHDOG_USEC": "2000000"}).start()
    rc = app.wait(120)
    time.sleep(0.5)
    notified = deploy_notify_socket.messages(0.2)
    row = observe(plc, "corrupt engine (one flipped byte in expert.onnx)", 0,
                  note=f"exit code {rc}; stderr: {app.stderr().strip().splitlines()[-1][:160]}; sd_notify: {notified or 'nothing'}")
    row["exit_code"] = rc
    fault_table.append(row)
    assert rc == 1
    assert "does not match its manifest" in app.stderr() and "Traceback" not in app.stderr()
    assert not any(m.startswith("READY=1") for m in notified)  # systemd: start failed -> Restart=on-failure, StartLimitBurst
    assert row["decisions_received"] == 0 and row["results_received"] == 0


@pytest.mark.parametrize("garbage", [
    pytest.param(b"version: 1\nsource: [unclosed\n  - garbage: {", id="yaml-garbage"),
    pytest.param(b"version: 1\nsource: [unclosed\n\x00\xff garbage", id="binary-garbage"),
])
def test_recipe_replaced_by_garbage_during_a_run(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker,
                                                 mqtt_recorder, fault_table, garbage: bytes) -> None:
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path)
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    app = Appliance(recipe, mosquitto_broker, tmp_path, "--max-frames", "25", "--watch-interval", "0.2").start()
    try:
        assert wait_until(lambda: len(decisions(plc)) >= 4, 120), app.stderr()[-2000:]
        recipe.write_bytes(garbage)
        assert app.wait(120) == 0, app.stderr()[-3000:]
    finally:
        app.kill()
    assert wait_until(lambda: any(s.get("state") == "stopped" for s in statuses(plc)), 10)
    stopped = [s for s in statuses(plc) if s.get("state") == "stopped"][-1]
    kind = "binary (non-UTF-8)" if b"\xff" in garbage else "YAML"
    row = observe(plc, f"recipe file replaced by {kind} garbage during the run", 25, status=stopped,
                  note="the last good recipe keeps deciding; the error (file:line) is on status and in the journal")
    row["journal_has_traceback"] = "Traceback" in app.stderr()
    fault_table.append(row)
    assert row["decisions_received"] == 25 and row["decisions_late"] == 0 and row["results_unique"] == 25
    shas = {r["recipe_sha256"] for r in results(plc)}
    assert len(shas) == 1  # every part was decided by the last good recipe
    assert "recipe edit NOT applied" in app.stderr()
    assert str(recipe) in row["status"].get("recipe_error", ""), row["status"]
    assert not row["journal_has_traceback"]

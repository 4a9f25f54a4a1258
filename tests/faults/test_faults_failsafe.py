"""Fault injection for the fail-safe fixes: a lane killed while the assistant is frozen, a live reload that
loads a new bank, an outage longer than the outbox cap, an `include:` outside the allowed roots.

Real parts as in the rest of the suite: `iad-edge run` as a child process, the
tiny DINOv2 on ONNX Runtime, a real mosquitto, a subscriber as the PLC. The
assistant of the first test is a stand-in process that registers for hard yield
and starts its thaw guard with the same calls as `iad-edge assistant` (the lane
only needs a registered, freezable process; no GGUF model is involved).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from edge.assistant.busy_signal import BusySignal
from edge.assistant.freezer import LEASE_S
from edge.assistant.thaw_guard import process_state
from tests.faults.harness import Appliance, decisions, observe, results, statuses, wait_until
from tests.faults.test_faults_process import ROOT, _outbox_rows, _recipe

STAND_IN_ASSISTANT = """
import os, sys, time
from edge.assistant import thaw_guard
from edge.assistant.busy_signal import BusySignal
busy = BusySignal(sys.argv[1])
guard = thaw_guard.start(busy.name)
busy.register_freezable(os.getpid())
print("ready", flush=True)
try:
    while True:
        sum(range(10000))  # busy, like a generating assistant
finally:
    thaw_guard.stop(guard)
"""


def _edit(recipe: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(recipe.read_text())
    change(data)
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    st = recipe.stat()
    os.utime(recipe, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_lane_sigkilled_while_the_assistant_is_frozen(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker,
                                                      mqtt_recorder, fault_table) -> None:
    name = f"iad-busy-fault-{uuid.uuid4().hex[:8]}"
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, source={"rate_hz": 20.0},
                     assistant={"enabled": True, "hard_yield": True, "busy_signal": name})
    assistant = subprocess.Popen([sys.executable, "-c", STAND_IN_ASSISTANT, name, "edge.cli", "assistant"],
                                 stdout=subprocess.PIPE, text=True)
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    try:
        assert assistant.stdout.readline().strip() == "ready"
        frozen_at_kill, attempts, resumed_after = False, 0, None
        while not frozen_at_kill and attempts < 5:
            attempts += 1
            app = Appliance(recipe, mosquitto_broker, tmp_path, name=f"lane{attempts}").start()
            try:
                assert wait_until(lambda n=attempts: len(decisions(plc)) >= 3 * n, 120), app.stderr()[-2000:]
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and process_state(assistant.pid) != "T":
                    time.sleep(0.0005)
                app.kill()  # SIGKILL while a frame is in flight: the lane cannot resume the assistant
                killed = time.monotonic()
            finally:
                app.kill()
            frozen_at_kill = process_state(assistant.pid) == "T"
            if frozen_at_kill:
                assert wait_until(lambda: process_state(assistant.pid) not in ("T", "t"), LEASE_S + 5, step=0.01)
                resumed_after = time.monotonic() - killed
        assert frozen_at_kill, "never caught the lane mid-frame"
        row = observe(plc, "lane SIGKILLed mid-frame while it held the assistant stopped (hard yield)", None,
                      note="the assistant's thaw guard resumed it when the freeze lease ran out; before the lease, "
                           "it stayed stopped (state T) until a new lane started",
                      extra={"assistant_state_at_kill": "T", "assistant_running_again_after_s": round(resumed_after, 2),
                             "freeze_lease_s": LEASE_S, "kill_attempts": attempts})
        fault_table.append(row)
        assert resumed_after <= LEASE_S + 1.0
        assert row["decisions_late"] == 0
    finally:
        os.kill(assistant.pid, signal.SIGCONT)
        assistant.terminate()
        assistant.wait(10)
        BusySignal(name).unlink()


def test_live_reload_to_a_new_bank_then_a_missing_one(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker,
                                                      mqtt_recorder, fault_table) -> None:
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, source={"rate_hz": 10.0})
    shutil.copy(tiny_bank_path, tmp_path / "bank-v2.npz")
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    app = Appliance(recipe, mosquitto_broker, tmp_path, "--max-frames", "40", "--watch-interval", "0.2").start()
    try:
        assert wait_until(lambda: len(decisions(plc)) >= 5, 120), app.stderr()[-2000:]
        _edit(recipe, lambda d: d["bank"].update(path="bank-v2.npz"))
        assert wait_until(lambda: len({r["recipe_sha256"] for r in results(plc)}) == 2, 60), app.stderr()[-2000:]
        _edit(recipe, lambda d: d["bank"].update(path="bank-missing.npz"))
        assert app.wait(120) == 0, app.stderr()[-3000:]
    finally:
        app.kill()
    assert wait_until(lambda: any(s.get("state") == "stopped" for s in statuses(plc)), 10)
    stopped = [s for s in statuses(plc) if s.get("state") == "stopped"][-1]
    res = results(plc)
    row = observe(plc, "recipe edited during the run: a new bank file, then a bank that does not exist", 40, status=stopped,
                  note="the new bank is loaded on lane-reload and swapped between two frames (no frame waits for the "
                       "load); the missing bank is refused, the last good recipe keeps deciding, recipe_error on status",
                  extra={"recipes_that_decided": len({r["recipe_sha256"] for r in res}),
                         "max_latency_ms": max(r["latency_ms"] for r in res)})
    fault_table.append(row)
    assert row["decisions_received"] == 40 and row["decisions_late"] == 0 and row["fail_safe_results"] == 0
    assert row["recipes_that_decided"] == 2
    assert "bank-missing.npz" in str(stopped.get("extras", {}).get("recipe_error", "")) or \
        "bank-missing.npz" in row["status"].get("recipe_error", ""), stopped


def test_outage_longer_than_the_outbox_cap(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder,
                                           fault_table) -> None:
    recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, source={"rate_hz": 10.0},
                     mqtt={"outbox_limits": {"max_rows": 10}})
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    app = Appliance(recipe, mosquitto_broker, tmp_path, "--max-frames", "80").start()
    try:
        assert wait_until(lambda: len(results(plc)) >= 3, 120), app.stderr()[-2000:]
        before = {r["trigger_id"] for r in results(plc)}
        mosquitto_broker.stop()
        time.sleep(2.5)  # ~25 results decided while the broker is away: 15 beyond the cap
        mosquitto_broker.start()
        assert app.wait(120) == 0, app.stderr()[-3000:]
    finally:
        app.kill()
    assert wait_until(lambda: any(s.get("state") == "stopped" for s in statuses(plc)), 10), \
        ([s.get("state") for s in statuses(plc)], app.stderr()[-2000:])
    stopped = [s for s in statuses(plc) if s.get("state") == "stopped"][-1]
    after = [r["trigger_id"] for r in results(plc) if r["trigger_id"] not in before]
    dropped = stopped["mqtt"]["outbox_dropped"]
    row = observe(plc, "broker away 2.5 s at 10 Hz with mqtt.outbox_limits.max_rows 10", 80, status=stopped,
                  note="the oldest results beyond the cap are dropped and counted on status (mqtt.outbox_dropped); "
                       "after the reconnect the newest results go first",
                  extra={"outbox_dropped": dropped, "first_result_after_reconnect": after[0] if after else None,
                         "outbox_rows_left": _outbox_rows(tmp_path / "outbox.sqlite")})
    fault_table.append(row)
    assert dropped > 0 and row["results_unique"] == 80 - dropped
    assert row["decisions_late"] == 0
    assert after and after[0] > min(after)  # not the oldest first


def test_include_outside_the_allowed_roots_during_a_run(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker,
                                                        mqtt_recorder, fault_table) -> None:
    station = tmp_path / "station"
    station.mkdir()
    expert = station / "engines" / "tiny"
    shutil.copytree(tiny_expert_dir, expert)
    recipe = _recipe(station, expert, tiny_bank_path, source={"rate_hz": 10.0})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "inc.yaml").write_text("thresholds:\n  image_score: 1.99\n  pixel: 1.99\n")
    plc = mqtt_recorder(mosquitto_broker, f"{ROOT}/#")
    app = Appliance(recipe, mosquitto_broker, station, "--max-frames", "25", "--watch-interval", "0.2",
                    env={"IAD_ALLOWED_ROOTS": "/var/lib/iad"}).start()
    try:
        assert wait_until(lambda: len(decisions(plc)) >= 4, 120), app.stderr()[-2000:]
        _edit(recipe, lambda d: d.update(include="../outside/inc.yaml"))
        assert app.wait(120) == 0, app.stderr()[-3000:]
    finally:
        app.kill()
    assert wait_until(lambda: any(s.get("state") == "stopped" for s in statuses(plc)), 10)
    stopped = [s for s in statuses(plc) if s.get("state") == "stopped"][-1]
    row = observe(plc, "recipe edited to include ../outside/inc.yaml (confinement on)", 25, status=stopped,
                  note="refused before the file is read, with its line; the last good recipe keeps deciding")
    fault_table.append(row)
    assert row["decisions_received"] == 25 and row["decisions_late"] == 0
    assert len({r["recipe_sha256"] for r in results(plc)}) == 1
    assert "include: " in row["status"].get("recipe_error", "") and "outside the allowed roots" in app.stderr()

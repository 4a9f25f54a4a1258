"""`iad-edge run` as the service runs it: SIGTERM means finish in-flight frames, deliver results, say 'stopped'."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.fixtures.expert import write_recipe

REPO = Path(__file__).resolve().parents[1]


def test_sigterm_shuts_down_cleanly_with_every_result_delivered(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = write_recipe(tmp_path, tiny_expert_dir)
    plc = mqtt_recorder(mosquitto_broker, "iad/testline/st1/#")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(recipe), "--mqtt-port", str(mosquitto_broker.port),
                             "--quiet", "--no-watch"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/decision")]) >= 5, 60)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "frames " in err and "decisions " in err  # the summary
    assert plc.wait_for(lambda m: any(x.topic.endswith("/status") and x.json["state"] == "stopped" for x in m), 10)
    stopped = [x.json for x in plc.on("/status") if x.json["state"] == "stopped"][-1]
    decided = stopped["counters"]["decisions"]
    assert decided == stopped["counters"]["frames"] >= 5
    results = {x.json["trigger_id"] for x in plc.on("/result")}
    assert results == set(range(decided))  # every decided frame's result went out before exit
    assert stopped["mqtt"]["outbox_pending"] == 0

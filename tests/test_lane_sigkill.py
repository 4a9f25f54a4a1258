"""`iad-edge run` killed with SIGKILL while the broker is away: its outbox is delivered by the next run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.expert import write_recipe

REPO = Path(__file__).resolve().parents[1]


def _outbox_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT payload FROM outbox ORDER BY id")]
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        db.close()


def _run_cmd(recipe: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge.cli", "run", str(recipe), "--mqtt-port", str(port), "--quiet", *extra]


def test_results_in_the_outbox_survive_sigkill_and_are_delivered_after_restart(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = write_recipe(tmp_path, tiny_expert_dir, {"mqtt": {"outbox": "outbox.sqlite", "keepalive_s": 2}})
    outbox = tmp_path / "outbox.sqlite"
    port = mosquitto_broker.port
    mosquitto_broker.stop()  # the broker is away: results pile up in the outbox
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    proc = subprocess.Popen(_run_cmd(recipe, port, "--connect-wait", "0"), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_outbox_rows(outbox)) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    stranded = _outbox_rows(outbox)
    assert len(stranded) >= 5
    killed_session = {r["session"] for r in stranded}
    assert len(killed_session) == 1

    mosquitto_broker.start()
    plc = mqtt_recorder(mosquitto_broker, "iad/testline/st1/result")
    done = subprocess.run(_run_cmd(recipe, port, "--max-frames", "2"), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    want = {(r["session"], r["trigger_id"]) for r in stranded}
    assert plc.wait_for(lambda m: want <= {(x.json["session"], x.json["trigger_id"]) for x in m}, 30)
    received = [(x.json["session"], x.json["trigger_id"]) for x in plc.messages]
    # Every stranded result arrives, newest first (mqtt.outbox_limits.drain default: fresh results are not
    # stuck behind a backlog), and the new run's own two results.
    from_killed = [pair for pair in received if pair[0] in killed_session]
    assert from_killed[: len(stranded)] == [(r["session"], r["trigger_id"]) for r in reversed(stranded)]
    assert len([s for s, _ in received if s not in killed_session]) == 2
    assert _outbox_rows(outbox) == []

"""Assistant killed mid-job: `iad-edge run` (real process) beside `iad-edge assistant` (real process, tiny GGUF in llama.cpp).

Reuses the assistant lane's fixtures and supervisor (tests/fixtures/assistant.py,
edge/assistant/supervisor.py; systemd's Restart=on-failure plays the supervisor
in production). Records what the PLC and an operator screen saw.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import yaml

from tests.faults.harness import Appliance, observe, results, wait_until

FRAMES = 20


@pytest.mark.slow
def test_assistant_killed_mid_job(assistant_recipe_path, mosquitto_broker, mqtt_recorder, tmp_path, fault_table) -> None:
    from edge.assistant.supervisor import AssistantSupervisor
    from edge.config import load_recipe

    path = assistant_recipe_path(backlog=64, max_regions=1)
    data = yaml.safe_load(path.read_text())
    data["source"]["rate_hz"] = 5.0
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    recipe = load_recipe(path)
    root = recipe.topic_root
    rec = mqtt_recorder(mosquitto_broker, f"{root}/#")
    sup = AssistantSupervisor(path, ["--mqtt-host", mosquitto_broker.host, "--mqtt-port", str(mosquitto_broker.port)],
                              backoff_s=[0.3], log_path=tmp_path / "assistant.log").start()
    app = None
    try:
        assert rec.wait_for(lambda m: any(x.topic.endswith("/status/assistant") and (x.json or {}).get("state") == "online"
                                          for x in m), 90), (tmp_path / "assistant.log").read_text()[-2000:]
        first_pid = sup.pid
        app = Appliance(path, mosquitto_broker, tmp_path, "--max-frames", str(FRAMES)).start()
        spool = recipe.assistant.spool
        assert wait_until(lambda: bool(list(spool.glob("*.json.work"))), 120, step=0.005), app.stderr()[-2000:]
        os.kill(first_pid, signal.SIGKILL)  # a llama.cpp abort, as far as the OS is concerned
        killed_at = time.time()
        assert app.wait(120) == 0, app.stderr()[-3000:]
        ng = sorted(r["trigger_id"] for r in results(rec) if r["verdict"] == "NG" and not r["fail_safe"] and r["regions"])

        def answered(msgs) -> bool:
            got = {(x.json or {}).get("trigger_id") for x in msgs if x.topic.endswith("/explanation")}
            return set(ng) <= got

        assert rec.wait_for(answered, 120), (tmp_path / "assistant.log").read_text()[-3000:]
    finally:
        if app is not None:
            app.kill()
        sup.stop()
    explanations = [m.json for m in rec.on("/explanation") if isinstance(m.json, dict)]
    assistant_states = [(m.json or {}).get("state") for m in rec.on("/status/assistant")]
    by_status: dict[str, int] = {}
    for e in explanations:
        by_status[str(e.get("status"))] = by_status.get(str(e.get("status")), 0) + 1
    row = observe(rec, "assistant SIGKILLed mid-job (llama.cpp abort), restarted by its supervisor", FRAMES,
                  note="the lane never noticed; the claimed job was retried by the restarted assistant")
    row.update(explanations=by_status, ng_parts=len(ng), assistant_status_sequence=assistant_states,
               assistant_restarts=sup.restarts,
               explanations_from_restarted_pid=sum(1 for e in explanations if e.get("pid") not in (None, first_pid)))
    fault_table.append(row)
    assert row["decisions_received"] == FRAMES and row["decisions_late"] == 0 and row["results_unique"] == FRAMES
    assert sup.restarts >= 1 and -signal.SIGKILL in sup.exits
    assert "offline" in assistant_states and assistant_states[-1] in ("online", "stopped")
    assert row["explanations_from_restarted_pid"] >= 1
    assert killed_at

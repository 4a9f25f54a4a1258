"""Isolation: SIGKILL the assistant mid-job while the real lane runs; decisions do not change; the assistant comes back.

Real parts only: mosquitto from the fixture, the real lane (tiny expert on ONNX
Runtime, synthetic source), the assistant as a separate OS process under
:class:`AssistantSupervisor` running the tiny GGUF in llama.cpp.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from edge.assistant.supervisor import AssistantSupervisor
from edge.config import load_recipe
from edge.station import Station, StationOptions

ISOLATION_FRAMES = 30


def _station(recipe, broker, hooks: bool):
    """The lane (with the assistant's busy flag and NG spool when ``hooks``), recording every decision."""
    decisions: dict[int, tuple] = {}
    record = lambda f, r, d: decisions.__setitem__(d.trigger_id, (d.verdict, d.fail_safe, None if d.score is None else round(d.score, 4)))
    station = Station(recipe, StationOptions(mqtt_host=broker.host, mqtt_port=broker.port, assistant_hooks=hooks,
                                             observers=(record,)))
    return station, decisions


def _run(station: Station, frames: int) -> None:
    station.start(frames)
    try:
        assert station.wait(120)
    finally:
        station.stop()


@pytest.mark.slow
def test_killing_the_assistant_mid_job_leaves_lane_decisions_unchanged_and_it_restarts(
    assistant_recipe_path, mosquitto_broker, mqtt_recorder, tmp_path
) -> None:
    import yaml

    path = assistant_recipe_path(backlog=64, max_regions=1)
    data = yaml.safe_load(path.read_text())
    data["source"]["rate_hz"] = 10.0  # triggers arrive over 3 s, while the assistant works
    data["decision"]["window_ms"] = 30000  # no timing-dependent fail-safe: compare pure decisions
    data["mqtt"]["port"] = mosquitto_broker.port
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    recipe = load_recipe(path)

    # reference: the lane alone
    station, reference = _station(recipe, mosquitto_broker, hooks=False)
    _run(station, ISOLATION_FRAMES)
    ng = sorted(t for t, (v, fs, _) in reference.items() if v == "NG" and not fs)
    assert len(reference) == ISOLATION_FRAMES and len(ng) >= 3

    rec = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/#")
    sup = AssistantSupervisor(path, ["--mqtt-host", mosquitto_broker.host, "--mqtt-port", str(mosquitto_broker.port)],
                              backoff_s=[0.3], log_path=tmp_path / "assistant.log").start()
    try:
        assert rec.wait_for(lambda m: any(x.topic.endswith("/status/assistant") and x.json.get("state") == "online" for x in m), 60), \
            (tmp_path / "assistant.log").read_text()[-2000:]
        first_pid = sup.pid
        station, assisted = _station(recipe, mosquitto_broker, hooks=True)
        runner = threading.Thread(target=_run, args=(station, ISOLATION_FRAMES))
        runner.start()
        spool = recipe.assistant.spool
        deadline = time.monotonic() + 30
        while not list(spool.glob("*.json.work")) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert list(spool.glob("*.json.work")), "the assistant never claimed a job"
        os.kill(first_pid, signal.SIGKILL)  # a llama.cpp abort, as far as the OS is concerned
        runner.join(60)  # station.stop() closed the busy flag and the spool writer
        # the assistant restarts and every NG part gets its answer (done; or failed after two deaths; never lost)
        def answered(msgs) -> bool:
            got = {x.json.get("trigger_id") for x in msgs if x.topic.endswith("/explanation") and x.json.get("status") in ("done", "failed", "skipped")}
            return set(ng) <= got
        assert rec.wait_for(answered, 90), (
            ng, [(x.json.get("trigger_id"), x.json.get("status"), x.json.get("pid"), x.json.get("elapsed_ms")) for x in rec.on("/explanation")],
            (tmp_path / "assistant.log").read_text()[-3000:])
    finally:
        sup.stop()
    assert assisted == reference  # same ids, same verdicts, same scores: the lane never noticed
    assert sup.restarts >= 1 and -signal.SIGKILL in sup.exits
    pids = {x.json.get("pid") for x in rec.on("/explanation")}
    assert pids - {first_pid}, "no explanation came from the restarted assistant"
    done = [x.json for x in rec.on("/explanation") if x.json.get("status") == "done"]
    assert done and all(e["bbox"] and e["location"] for d in done for e in d["explanations"])

"""The composition root: ordered start, reverse stop, nothing leaked, and a complete first status."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

from edge.config import load_recipe
from edge.inspector import Inspector
from edge.station import Station, StationOptions, build_lane
from tests.fixtures.expert import write_recipe


def _recipe(tmp_path, expert_dir, bank, **overrides):
    shutil.copy(bank, tmp_path / "bank.npz")
    path = write_recipe(tmp_path, expert_dir, overrides)
    return path, load_recipe(path)


def _open_fds() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the fd of the listdir itself
    return out


def _children() -> set[int]:
    me = str(os.getpid())
    kids = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                kids.add(int(pid))
    return kids


def _settled(baseline_threads: set[str], baseline_fds: dict[str, str], timeout: float = 5.0) -> tuple[set[str], dict]:
    """Threads and fds beyond the baseline, once background threads had a moment to end."""
    deadline = time.monotonic() + timeout
    while True:
        threads = {f"{t.name}#{t.ident}" for t in threading.enumerate()} - baseline_threads
        fds = {fd: target for fd, target in _open_fds().items() if baseline_fds.get(fd) != target}
        if (not threads and not fds) or time.monotonic() > deadline:
            return threads, fds
        time.sleep(0.1)


def test_start_stop_twice_leaks_no_thread_process_socket_or_file(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder) -> None:
    path, recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path, archive={"enabled": True, "path": "archive"})
    plc = mqtt_recorder(mosquitto_broker, f"{recipe.topic_root}/#")
    baseline_threads = {f"{t.name}#{t.ident}" for t in threading.enumerate()}
    baseline_fds = _open_fds()
    baseline_children = _children()
    sessions = []
    for run in range(2):
        station = Station(recipe, StationOptions(
            mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port, recipe_path=path, watch=True,
            commands=True, assistant_hooks=True, status_interval_s=0.2))
        station.start(max_frames=4)
        assert station.link is not None and station.link.wait_connected(10)
        assert station.commands is not None and station.watcher is not None and station.spool is not None
        assert station.wait(60)
        sessions.append(station.session)
        assert plc.wait_for(lambda m, run=run: sum(1 for x in m if x.topic.endswith("/decision")) == 4 * (run + 1), 30)
        station.stop()
        station.stop()  # idempotent
        threads, fds = _settled(baseline_threads, baseline_fds)
        assert not threads, f"run {run + 1}: threads left behind: {sorted(threads)}"
        assert not fds, f"run {run + 1}: files/sockets left open: {fds}"
        assert _children() == baseline_children, f"run {run + 1}: child processes left behind"
    assert sessions[0] != sessions[1]
    stopped = [x.json for x in plc.on("/status") if x.json.get("state") == "stopped"]
    assert [s["session"] for s in stopped] == sessions


def test_a_failing_step_undoes_the_steps_before_it(tmp_path, tiny_expert_dir, tiny_bank_path) -> None:
    """A bad shadow candidate (step 9) stops the station before frames flow; source, outbox and lane are released."""
    path, recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path)
    bad = tmp_path / "missing-candidate.yaml"
    baseline_threads = {f"{t.name}#{t.ident}" for t in threading.enumerate()}
    baseline_fds = _open_fds()
    station = Station(recipe, StationOptions(mqtt_host="127.0.0.1", mqtt_port=1, shadow=bad))
    try:
        station.build()
    except Exception as exc:  # the recipe loader's error names the file
        assert str(bad) in str(exc)
    else:
        raise AssertionError("a missing shadow candidate must stop the station")
    threads, fds = _settled(baseline_threads, baseline_fds)
    assert not threads and not fds, (threads, fds)


class _SlowToDescribe:
    """A real inspector whose ``expert`` attribute answers slowly the first time (a hash of a large engine file).

    The lane reads ``inspector.expert`` while it is constructed; anything that
    makes that slow must not let a status without the lane reach the broker.
    """

    def __init__(self, inner: Inspector, delay_s: float):
        self._inner = inner
        self._delay_s = delay_s

    def __getattr__(self, name: str):
        if name == "expert" and self._delay_s:
            time.sleep(self._delay_s)
            self._delay_s = 0.0
        return getattr(self._inner, name)


def test_first_retained_online_status_carries_session_and_counters_and_the_will_the_session(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder) -> None:
    _, recipe = _recipe(tmp_path, tiny_expert_dir, tiny_bank_path)
    status_topic = f"{recipe.topic_root}/status"
    rec = mqtt_recorder(mosquitto_broker, status_topic)
    inspector = _SlowToDescribe(Inspector.from_recipe(recipe, bank_path=tmp_path / "bank.npz"), delay_s=1.0)
    lane = build_lane(recipe, mqtt_host=mosquitto_broker.host, mqtt_port=mosquitto_broker.port, inspector=inspector,
                      status_interval_s=30.0)
    try:
        assert lane.link.wait_connected(10)
        assert rec.wait_for(lambda m: any(x.json.get("state") == "online" for x in m), 10)
        first = next(x.json for x in rec.on("/status") if x.json.get("state") == "online")
        assert first.get("session") == lane.session, f"first online status lacks the session: {first}"
        assert "counters" in first and "recipe_sha256" in first, f"first online status is a skeleton: {first}"
        # A later subscriber gets the same complete body from the retained message.
        late = mqtt_recorder(mosquitto_broker, status_topic)
        assert late.wait_for(lambda m: bool(m), 5)
        assert late.messages[0].retain and late.messages[0].json.get("session") == lane.session
        # The will: kill the connection without DISCONNECT; the broker publishes it at once.
        client = lane.link._client
        sock = client.socket()
        sock.shutdown(socket.SHUT_RDWR)
        assert rec.wait_for(lambda m: any(x.json.get("state") == "offline" for x in m), 10)
        will = next(x.json for x in rec.on("/status") if x.json.get("state") == "offline")
        assert will["session"] == lane.session and will["line"] == recipe.line and will["station"] == recipe.station
        assert "time" not in will and will["connected_since"] <= time.time()
    finally:
        lane.stop(drain_timeout_s=1)
        inspector._inner.close()


def test_station_steps_are_one_ordered_list() -> None:
    """The documented order: whoever is needed comes first (the MQTT link after the lane, READY last)."""
    station = Station.__new__(Station)
    order = [name for name, _ in Station.steps(station)] + [name for name, _ in Station.run_steps(station)]
    assert order.index("lane") < order.index("mqtt link") < order.index("commands")
    assert order.index("source") < order.index("lane") and order.index("inspector") < order.index("lane")
    assert order.index("assistant hooks") < order.index("assistant") < order.index("frames") < order.index("ready")
    assert order[-1] == "ready"
    doc = Path(__file__).resolve().parents[1].joinpath("edge", "station.py").read_text()
    for name in order:
        assert f"``{name}``" in doc, f"step {name!r} missing from the module docstring"

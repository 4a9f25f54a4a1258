"""A real `iad-edge run` process speaks sd_notify: READY=1 once up, WATCHDOG=1 from the frame loop, STOPPING=1 at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.fixtures.expert import write_recipe


def _run_env(notify_path: str, watchdog_usec: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(NOTIFY_SOCKET=notify_path, WATCHDOG_USEC=str(watchdog_usec), PYTHONUNBUFFERED="1")
    env.pop("WATCHDOG_PID", None)  # systemd sets it to the service's PID; unset means "this process"
    return env


def test_run_process_sends_ready_watchdog_and_stopping(tmp_path: Path, tiny_recipe_path: Path, deploy_notify_socket,
                                                       mosquitto_broker) -> None:
    cmd = [sys.executable, "-m", "edge.cli", "run", str(tiny_recipe_path), "--max-frames", "30", "--quiet",
           "--mqtt-host", mosquitto_broker.host, "--mqtt-port", str(mosquitto_broker.port), "--no-watch"]
    proc = subprocess.run(cmd, env=_run_env(deploy_notify_socket.path, 1_000_000), capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = deploy_notify_socket.messages(0.3)
    assert got, "no sd_notify datagram received"
    assert got[0].startswith("READY=1\nSTATUS=inspecting testline/st1"), got
    assert "WATCHDOG=1" in got, got
    assert got[-1].startswith("STOPPING=1"), got
    assert sum(m.startswith("READY=1") for m in got) == 1


def test_sigterm_gives_stopping_and_a_clean_exit(tmp_path: Path, tiny_expert_dir: Path, tiny_bank_path: Path,
                                                  deploy_notify_socket) -> None:
    """What `systemctl stop` does: SIGTERM, then the process says STOPPING=1 and exits 0 within TimeoutStopSec."""
    import shutil

    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = write_recipe(tmp_path, tiny_expert_dir, {"source": {"rate_hz": 5.0}, "mqtt": {"enabled": False}})
    cmd = [sys.executable, "-m", "edge.cli", "run", str(recipe), "--quiet", "--no-watch"]
    proc = subprocess.Popen(cmd, env=_run_env(deploy_notify_socket.path, 2_000_000), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert deploy_notify_socket.wait_for("READY=1", timeout=120), proc.stderr.read() if proc.poll() is not None else ""
        assert deploy_notify_socket.wait_for("WATCHDOG=1", timeout=10, count=2)  # a running line keeps feeding it
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err[-3000:]
    got = deploy_notify_socket.messages(0.2)
    stopping = [i for i, m in enumerate(got) if m.startswith("STOPPING=1")]
    assert len(stopping) == 1 and all(not m.startswith("WATCHDOG") for m in got[stopping[0] + 1:]), got

"""Fault-injection harness: the appliance as a real process, and what the PLC side observed.

`Appliance` runs ``python -m edge.cli run RECIPE`` (exactly what the systemd
unit runs) with its output in files; `observe()` turns what an MQTT subscriber
(the PLC, :class:`tests.fixtures.broker.MqttRecorder`) received into one row of
the fault table (docs/faults.md): decisions delivered and late, results
delivered (unique / duplicates / gaps), the last status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class Appliance:
    """One ``iad-edge run`` process (start, SIGKILL, SIGTERM, wait), output kept in ``folder``."""

    def __init__(self, recipe: Path, broker: Any, folder: Path, *args: str, env: dict[str, str] | None = None,
                 name: str = "appliance"):
        self.recipe = recipe
        self.folder = folder
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        self.cmd = [sys.executable, "-m", "edge.cli", "run", str(recipe), "--quiet", *args]
        if broker is not None:
            self.cmd += ["--mqtt-host", broker.host, "--mqtt-port", str(broker.port)]
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc: subprocess.Popen | None = None

    def start(self) -> Appliance:
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=self.env, cwd=self.folder)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float = 120.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            self._close_files()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing flushed beyond what is already on disk."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_files()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def _close_files(self) -> None:
        for handle in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if handle is not None and not handle.closed:
                handle.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


def wait_until(predicate, timeout: float = 30.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def decisions(rec: Any) -> list[dict[str, Any]]:
    """Decision messages with their receive time."""
    out = []
    for m in rec.on("/decision"):
        body = m.json
        if isinstance(body, dict):
            out.append(dict(body, _received=m.received_at))
    return out


def results(rec: Any) -> list[dict[str, Any]]:
    return [m.json for m in rec.on("/result") if isinstance(m.json, dict)]


def statuses(rec: Any) -> list[dict[str, Any]]:
    return [m.json for m in rec.on("/status") if isinstance(m.json, dict)]


def observe(rec: Any, fault: str, expected_triggers: int | None = None, note: str = "",
            status: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row of the fault table from what the PLC subscriber received."""
    decs = decisions(rec)
    late = [d for d in decs if d["_received"] > d["deadline"]]
    res = results(rec)
    keys = [(r.get("session"), r.get("trigger_id")) for r in res]
    unique = sorted(set(keys), key=lambda k: (str(k[0]), k[1]))
    gaps: dict[str, list[int]] = {}
    for session in {k[0] for k in unique}:
        ids = sorted(k[1] for k in unique if k[0] == session)
        missing = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids)) if ids else []
        if missing:
            gaps[str(session)] = missing
    fail_safe = [r for r in res if r.get("fail_safe")]
    undelivered = sorted({r["trigger_id"] for r in res if r.get("decision_delivery") not in ("sent", None)})
    last = status if status is not None else (statuses(rec)[-1] if statuses(rec) else None)
    row = {
        "fault": fault,
        "triggers": expected_triggers,
        "decisions_received": len(decs),
        "decisions_late": len(late),
        "decision_ids": [d["trigger_id"] for d in decs],
        "results_received": len(res),
        "results_unique": len(unique),
        "results_duplicates": len(res) - len(unique),
        "results_gaps": gaps,
        "sessions": sorted({str(k[0]) for k in unique}),
        "fail_safe_results": len(fail_safe),
        "fail_safe_reasons": sorted({str(r.get("reason"))[:80] for r in fail_safe})[:4],
        "decision_not_delivered_ids": undelivered,
        "status": _status_summary(last),
        "note": note,
    }
    row.update(extra or {})
    return row


def _status_summary(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if not status:
        return None
    out = {"state": status.get("state")}
    counters = status.get("counters") or {}
    for key in ("frames", "decisions", "fail_safe", "undelivered", "late", "stage_errors", "non_finite", "reconnects",
                "archive_errors", "recipe_rejected"):
        if key in counters:
            out[key] = counters[key]
    extras = status.get("extras") or {}
    for key in ("recipe_error", "source_error", "outbox_error"):
        if extras.get(key):
            out[key] = str(extras[key])[:160]
    archive = status.get("archive")
    if isinstance(archive, dict):
        out["archive"] = {k: archive[k] for k in ("written", "errors", "skipped_queue_full", "last_error") if k in archive}
    mqtt = status.get("mqtt") or {}
    if "outbox_pending" in mqtt:
        out["outbox_pending"] = mqtt["outbox_pending"]
    return out


def dump(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(rows, indent=1, default=str))

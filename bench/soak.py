"""Soak benchmark: N minutes of triggers with the assistant busy; does anything grow?

Everything real and as deployed: mosquitto on loopback, ``iad-edge run`` and
``iad-edge assistant`` as two OS processes (what the two systemd units run),
the tiny random DINOv2 on ONNX Runtime, the tiny Qwen2 GGUF in llama.cpp,
synthetic parts at a fixed trigger rate with many NG parts, so the assistant's
backlog stays full (explanations and ``skipped`` notes) for the whole run, and
the archive's size retention is exercised.

Every ``--sample-s`` seconds it samples, from ``/proc``: resident memory (RSS),
open file descriptors and threads of both processes; the outbox (rows and
bytes of the SQLite file + WAL); the archive's size; and trigger→decision
latency p50/p99 as received by a subscriber playing the PLC. After a warm-up
(``--warmup-s``, excluded: caches, pools and the outbox's WAL file fill first), it fits a line to each
series and prints the growth **per hour** with its standard error, and says
whether the growth is beyond noise (slope > 3 standard errors AND the fitted
change over the run > 2x the residual spread).

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 5] [--sample-s 5] [--warmup-s 30]

Linux only (reads /proc). Not a test: it prints figures, it does not judge the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------- /proc sampling
def proc_sample(pid: int | None) -> dict[str, float]:
    """RSS (MB), open fds and threads of ``pid`` (NaN when it is gone)."""
    out = {"rss_mb": float("nan"), "fds": float("nan"), "threads": float("nan")}
    if not pid:
        return out
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mb"] = int(line.split()[1]) / 1024.0
            elif line.startswith("Threads:"):
                out["threads"] = float(line.split()[1])
        out["fds"] = float(len(os.listdir(f"/proc/{pid}/fd")))
    except (OSError, ValueError):
        pass
    return out


def outbox_sample(path: Path) -> dict[str, float]:
    rows = float("nan")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            rows = float(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        pass
    def kb(p: Path) -> float:
        return p.stat().st_size / 1024.0 if p.is_file() else 0.0

    # The WAL file grows until SQLite's auto-checkpoint (1000 pages, ~4 MB) and is then reused, not truncated:
    # a plateau, reported separately from the database file itself.
    return {"outbox_rows": rows, "outbox_kb": kb(path), "outbox_wal_kb": kb(path.with_name(path.name + "-wal"))}


def folder_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total / 1e6


# ---------------------------------------------------------------- the PLC
class Plc:
    """Subscriber on ``decision``: latency = receive time - trigger time (same clock, same machine)."""

    def __init__(self, host: str, port: int, root: str):
        import paho.mqtt.client as mqtt

        self.latencies: list[float] = []
        self.explanations = {"done": 0, "skipped": 0, "other": 0}
        self.explained_parts: set[tuple[str, str]] = set()  # (session, trigger_id) with an explanation message
        self.ng_decisions = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="soak-plc",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(f"{root}/decision", 1), (f"{root}/explanation", 1)])
        self.client.on_message = self._message
        self.client.connect(host, port)
        self.client.loop_start()

    def _message(self, client, userdata, msg) -> None:
        now = time.time()
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self._lock:
            if msg.topic.endswith("/decision"):
                self.latencies.append((now - float(body["trigger_time"])) * 1000.0)
                self.ng_decisions += body.get("verdict") == "NG"
            else:
                self.explained_parts.add((str(body.get("session")), str(body.get("trigger_id"))))
                key = body.get("status") if body.get("status") in ("done", "skipped") else "other"
                self.explanations[key] += 1

    def take(self) -> list[float]:
        with self._lock:
            out, self.latencies = self.latencies, []
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------- setup
def write_recipe(workdir: Path, expert_dir: Path, gguf: Path, resolution: int, rate: float, port: int) -> Path:
    import yaml

    recipe = {
        "version": 1, "line": "soak", "station": "st1",
        "source": {"type": "synthetic", "width": 224, "height": 224, "channels": 3, "defect_rate": 0.5, "seed": 11,
                   "rate_hz": rate},
        "expert": {"backend": "onnxruntime", "model": str(expert_dir / "expert.onnx"), "threads": 1},
        "tiling": {"mode": "resize", "resolution": resolution},
        "bank": {"path": "bank.npz"},
        "thresholds": {"image_score": 0.17, "pixel": 0.15},
        "decision": {"window_ms": 2000},
        "mqtt": {"host": "127.0.0.1", "port": port, "outbox": "outbox.sqlite"},
        # small size cap: retention deletes old entries during the run (it must not leak either)
        "archive": {"path": "archive", "max_total_mb": 20, "ok_sample_rate": 0.1},
        "assistant": {"enabled": True, "model": str(gguf), "n_ctx": 1024, "max_tokens": 128, "threads": 1, "backlog": 4,
                      "spool": "spool", "max_regions": 1, "busy_signal": f"iad-busy-soak-{os.getpid()}"},
    }
    path = workdir / "soak.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def fit(t_s: np.ndarray, y: np.ndarray) -> dict[str, float] | None:
    """Least-squares line; slope per hour, its standard error, residual spread, fitted change over the span."""
    ok = np.isfinite(y)
    t, y = t_s[ok] / 3600.0, y[ok]
    if len(t) < 4 or np.ptp(t) == 0:
        return None
    slope, intercept = np.polyfit(t, y, 1)
    resid = y - (slope * t + intercept)
    dof = len(t) - 2
    se = float(np.sqrt((resid @ resid) / dof / np.sum((t - t.mean()) ** 2))) if dof > 0 else float("inf")
    spread = float(np.std(resid))
    change = float(slope * np.ptp(t))
    beyond = abs(slope) > 3 * se and abs(change) > 2 * spread and abs(change) > 1e-9
    return {"slope_per_h": float(slope), "se_per_h": se, "change": change, "spread": spread,
            "mean": float(y.mean()), "beyond_noise": bool(beyond)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="Soak duration (default 10).")
    parser.add_argument("--rate", type=float, default=5.0, help="Trigger rate in Hz (default 5).")
    parser.add_argument("--sample-s", type=float, default=5.0, help="Seconds between samples (default 5).")
    parser.add_argument("--warmup-s", type=float, default=90.0,
                        help="Samples before this are not fitted (default 90: pools, caches and the outbox WAL fill first).")
    parser.add_argument("--resolution", type=int, default=224, help="Model input size (default 224).")
    parser.add_argument("--workdir", type=Path, help="Keep models and outputs here (default: a temp folder).")
    parser.add_argument("--json", type=Path, help="Also write every sample and the fits to this JSON file.")
    args = parser.parse_args(argv)

    from bench.isolation import prepare
    from edge.devtools.broker import MosquittoBroker

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="iad-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: preparing tiny expert, bank and GGUF in {workdir} ...", flush=True)
    expert_dir, gguf = prepare(workdir, args.resolution, 1)
    broker = MosquittoBroker(workdir=workdir / "mosquitto").start()
    recipe = write_recipe(workdir, expert_dir, gguf, args.resolution, args.rate, broker.port)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    mqtt_args = ["--mqtt-host", broker.host, "--mqtt-port", str(broker.port)]
    logs = {name: open(workdir / f"{name}.log", "ab") for name in ("lane", "assistant")}
    lane = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(recipe), "--quiet", "--no-watch", *mqtt_args],
                            stdout=logs["lane"], stderr=subprocess.STDOUT, env=env, cwd=workdir)
    assistant = subprocess.Popen([sys.executable, "-m", "edge.cli", "assistant", str(recipe), *mqtt_args],
                                 stdout=logs["assistant"], stderr=subprocess.STDOUT, env=env, cwd=workdir)
    plc = Plc(broker.host, broker.port, "iad/soak/st1")
    samples: list[dict[str, Any]] = []
    start = time.monotonic()
    end = start + args.minutes * 60.0
    print(f"soak: {args.minutes:g} min at {args.rate:g} Hz, sample every {args.sample_s:g} s (warm-up {args.warmup_s:g} s)")
    print(f"{'t_s':>6} {'lane_MB':>8} {'fds':>4} {'thr':>4} {'asst_MB':>8} {'fds':>4} {'outbox':>6} {'obx_kB':>7} {'wal_kB':>7} "
          f"{'arch_MB':>7} {'n':>4} {'p50_ms':>7} {'p99_ms':>7}")
    try:
        while time.monotonic() < end:
            time.sleep(args.sample_s)
            if lane.poll() is not None or assistant.poll() is not None:
                print(f"soak: a process exited early (lane rc {lane.poll()}, assistant rc {assistant.poll()}); "
                      f"see {workdir}/*.log", file=sys.stderr)
                break
            lat = plc.take()
            ln, asst = proc_sample(lane.pid), proc_sample(assistant.pid)
            s = {"t_s": time.monotonic() - start, "lane_rss_mb": ln["rss_mb"], "lane_fds": ln["fds"],
                 "lane_threads": ln["threads"], "assistant_rss_mb": asst["rss_mb"], "assistant_fds": asst["fds"],
                 **outbox_sample(workdir / "outbox.sqlite"), "archive_mb": folder_mb(workdir / "archive"),
                 "decisions": len(lat),
                 "latency_p50_ms": float(np.percentile(lat, 50)) if lat else float("nan"),
                 "latency_p99_ms": float(np.percentile(lat, 99)) if lat else float("nan")}
            samples.append(s)
            print(f"{s['t_s']:6.0f} {s['lane_rss_mb']:8.1f} {s['lane_fds']:4.0f} {s['lane_threads']:4.0f} "
                  f"{s['assistant_rss_mb']:8.1f} {s['assistant_fds']:4.0f} {s['outbox_rows']:6.0f} {s['outbox_kb']:7.0f} {s['outbox_wal_kb']:7.0f} "
                  f"{s['archive_mb']:7.1f} {s['decisions']:4d} {s['latency_p50_ms']:7.1f} {s['latency_p99_ms']:7.1f}",
                  flush=True)
    finally:
        for proc in (lane, assistant):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (lane, assistant):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        plc.close()
        broker.close()
        for handle in logs.values():
            handle.close()

    fitted = [s for s in samples if s["t_s"] >= args.warmup_s]
    print(f"\nexplanation messages: {plc.explanations} for {len(plc.explained_parts)} distinct parts; "
          f"NG decisions: {plc.ng_decisions} (the assistant is saturated when 'skipped' > 0)")
    if len(fitted) < 4:
        print("soak: too few samples after the warm-up to fit a trend (run longer)")
        return 1
    t = np.array([s["t_s"] for s in fitted])
    units = {"lane_rss_mb": "MB", "lane_fds": "fds", "lane_threads": "threads", "assistant_rss_mb": "MB",
             "assistant_fds": "fds", "outbox_rows": "rows", "outbox_kb": "kB", "outbox_wal_kb": "kB", "archive_mb": "MB",
             "latency_p50_ms": "ms", "latency_p99_ms": "ms"}
    fits: dict[str, Any] = {}
    print(f"\ngrowth per hour (linear fit over {t[-1] - t[0]:.0f} s after warm-up, {len(fitted)} samples):")
    print(f"{'series':<18} {'mean':>9} {'slope/h':>10} {'± se/h':>9} {'change':>9} {'resid sd':>9}  verdict")
    for key, unit in units.items():
        f = fit(t, np.array([s[key] for s in fitted], dtype=float))
        fits[key] = f
        if f is None:
            print(f"{key:<18} {'n/a':>9}")
            continue
        verdict = "GROWS beyond noise" if f["beyond_noise"] and f["slope_per_h"] > 0 else (
            "shrinks beyond noise" if f["beyond_noise"] else "no growth beyond noise")
        print(f"{key:<18} {f['mean']:9.2f} {f['slope_per_h']:+10.2f} {f['se_per_h']:9.2f} {f['change']:+9.2f} "
              f"{f['spread']:9.2f}  {verdict} ({unit})")
    total = sum(s["decisions"] for s in samples)
    print(f"\ndecisions received: {total} in {samples[-1]['t_s']:.0f} s ({total / samples[-1]['t_s']:.2f}/s at "
          f"{args.rate:g} Hz triggered)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "samples": samples,
                                         "fits": fits, "explanations": plc.explanations}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

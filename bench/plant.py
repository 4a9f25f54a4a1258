"""Benchmark: does the plant floor (Sparkplug B + Prometheus metrics + a console streaming decisions) slow the lane?

One station (ViT-S/14 random weights, ORT CPU, mosquitto on loopback, frames replayed
from memory and pushed at ~60 % of the expert-only rate) runs the same number of
frames in two conditions, interleaved round by round so that load from other
processes hits both alike:

* **plain**: the lane with its MQTT link only;
* **plant**: the same plus the Sparkplug B edge node (DDATA per decision, a SCADA
  subscriber counting them), the Prometheus endpoint scraped every 0.5 s, and
  `iad-edge console` (its own process) with one client reading its server-sent
  event stream of decisions. The scraper, the SCADA subscriber and the event-stream
  client run in a separate process, as they would be other machines on the floor.

Reported: trigger->decision p50/p99 (made, in the lane) and p99 received by the PLC
subscriber, per condition (pooled over rounds), and ``p99_ratio`` = plant / plain
(target <= 1.05). A ratio from one run on a shared machine: compare within a run only.

    .venv/bin/python bench/plant.py [--frames 60] [--rounds 3] [--pace 0.6] [--resolution 224] [--threads 2] [--workdir DIR] [--json FILE]

Needs the [export] extra (torch) to export the model, the [plant] extra and mosquitto. On a machine shared
with other work, run it at the station unit's priority (`nice -n -5`, as systemd/iad-edge@.service), or
the other load moves the p99 of both conditions far more than 5 % (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._models import exported_expert
from bench.lane import Plc, ReplaySource, _expert_only, _pct, _thread_cpu


def _write_recipe(workdir: Path, model: Path, resolution: int, threads: int, broker_port: int) -> Path:
    import yaml

    path = workdir / "plant.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "line": "bench", "station": "plant",
        "source": {"type": "synthetic", "width": resolution, "height": resolution, "defect_rate": 0.3, "seed": 5},
        "expert": {"backend": "onnxruntime", "model": str(model), "threads": threads},
        "tiling": {"mode": "resize", "resolution": resolution},
        "bank": {"path": f"bank-{resolution}.npz"},
        "decision": {"window_ms": 60000, "fail_safe": "NG"},
        "mqtt": {"port": broker_port, "outbox": "plant.outbox.sqlite"},
        "archive": {"enabled": False},
        "sparkplug": {"enabled": False, "group_id": "bench", "bdseq_file": "plant.bdseq"},
        "metrics": {"port": None},
        "console": {"port": 0},
    }, sort_keys=False))
    return path


def _with_plant(recipe: Any) -> Any:
    """The same recipe with Sparkplug on and a metrics endpoint on a free port."""
    return recipe.model_copy(update={
        "sparkplug": recipe.sparkplug.model_copy(update={"enabled": True}),
        "metrics": recipe.metrics.model_copy(update={"port": 0}),
    })


class Counter:
    """Counts MQTT messages on a topic filter (the SCADA host's view of DDATA)."""

    def __init__(self, host: str, port: int, topic: str):
        import paho.mqtt.client as mqtt

        self.count = 0
        ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="bench-scada")
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=0)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda *a: setattr(self, "count", self.count + 1)
        self.client.connect(host, port)
        self.client.loop_start()
        ready.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SseClient(threading.Thread):
    """A browser stand-in: reads the console's /api/events stream and counts decision events."""

    def __init__(self, host: str, port: int):
        super().__init__(name="bench-sse", daemon=True)
        self.host, self.port, self.decisions = host, port, 0
        self._conn: http.client.HTTPConnection | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        self._conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self._conn.request("GET", "/api/events")
        response = self._conn.getresponse()
        self.connected.set()
        try:
            for line in response:
                if line.startswith(b"event: decision"):
                    self.decisions += 1
        except (OSError, ValueError, http.client.HTTPException):
            return

    def close(self) -> None:
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.close()


class Scraper(threading.Thread):
    """Prometheus stand-in: GET /metrics every ``interval_s``."""

    def __init__(self, port: int, interval_s: float = 0.5):
        super().__init__(name="bench-scraper", daemon=True)
        self.port, self.interval_s, self.scrapes = port, interval_s, 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
                self.scrapes += 1
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()


def _clients_main(metrics_port: int, console_port: int, broker_port: int) -> int:
    """The outside world of the plant condition, in its own process (as on the plant floor: other machines).

    A Prometheus stand-in scraping /metrics, a browser stand-in reading the console's event stream, a SCADA
    host counting DDATA. Prints the counts as JSON when its stdin closes.
    """
    scada = Counter("127.0.0.1", broker_port, "spBv1.0/bench/DDATA/#")
    scraper = Scraper(metrics_port)
    scraper.start()
    sse = SseClient("127.0.0.1", console_port)
    sse.start()
    sse.connected.wait(10)
    print("ready", flush=True)
    sys.stdin.read()
    scraper.close()
    sse.close()
    scada.close()
    print(json.dumps({"scrapes": scraper.scrapes, "sse_decisions": sse.decisions, "ddata": scada.count}), flush=True)
    return 0


def _run(recipe: Any, recipe_path: Path, inspector: Any, broker: Any, frames: int, replay: list, rate: float,
         plant: bool) -> dict:
    from edge.station import Station, StationOptions

    console = clients = None
    if plant:  # the console process (and, below, the clients' process)
        console, console_port = _start_console(recipe_path, broker)
    plc = Plc(broker.host, broker.port, f"{recipe.topic_root}/decision")
    station = Station(_with_plant(recipe) if plant else recipe, StationOptions(
        mqtt_host=broker.host, mqtt_port=broker.port, inspector=inspector, source=ReplaySource(replay, rate), pull=False))
    station.build()
    assert station.lane is not None and station.link is not None
    station.link.wait_connected(10)
    if plant:
        hooks = getattr(station, "plant", None)
        if hooks is None or hooks.sparkplug is None or hooks.metrics is None:
            raise SystemExit("bench/plant.py: the station did not start Sparkplug/metrics (is the 'plant' step in "
                             "edge/station.py?)")
        hooks.sparkplug.wait_connected(10)
        clients = subprocess.Popen([sys.executable, __file__, "--clients", str(hooks.metrics.port), str(console_port),
                                    str(broker.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        assert clients.stdout is not None and clients.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # everybody subscribed before the first trigger
    latencies: list[float] = []
    overhead: list[float] = []  # latency minus this frame's own expert time: the part the plant outputs could add to
    station.lane.add_observer(lambda f, r, d: (latencies.append(d.latency_ms),
                                               overhead.append(d.latency_ms - d.timings.get("expert", 0.0))))
    cpu_process = time.process_time()
    cpu_threads = _thread_cpu()
    cpu_console = _proc_cpu(console.pid) if console is not None else 0.0
    station.start(frames)
    station.wait()
    deadline = time.monotonic() + 30
    while len(latencies) < frames and time.monotonic() < deadline:
        time.sleep(0.01)
    counters = station.lane.counters.snapshot()
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    after = _thread_cpu()
    sparkplug_cpu = sum(after[tid] - cpu_threads.get(tid, 0.0) for tid, name in names.items()
                        if tid in after and (name.startswith("sparkplug") or "iad-spb" in name))
    post_cpu = sum(after[tid] - cpu_threads.get(tid, 0.0) for tid, name in names.items() if tid in after and name == "lane-post")
    cpu = {"process_ms_per_decision": 1000.0 * (time.process_time() - cpu_process) / max(1, len(latencies)),
           "sparkplug_threads_ms_per_decision": 1000.0 * sparkplug_cpu / max(1, len(latencies)),
           "lane_post_ms_per_decision": 1000.0 * post_cpu / max(1, len(latencies))}
    if console is not None:
        cpu["console_process_ms_per_decision"] = 1000.0 * (_proc_cpu(console.pid) - cpu_console) / max(1, len(latencies))
    station.stop()
    time.sleep(0.3)
    plc.close()
    out = {"lane": latencies, "overhead": overhead, "plc": list(plc.latencies), "fail_safe": counters.get("fail_safe", 0),
           "p99": _pct(latencies, 0.99), "cpu": cpu}
    if clients is not None:
        stdout, _ = clients.communicate("", timeout=30)
        out.update(json.loads(stdout.strip().splitlines()[-1]))
    if console is not None:
        console.terminate()
        console.wait(20)
        console.stderr.close()
    return out


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _start_console(recipe_path: Path, broker: Any) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "console", str(recipe_path), "--port", "0",
                             "--mqtt-host", broker.host, "--mqtt-port", str(broker.port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        match = re.search(r"console: http://[^:]+:(\d+)/", line)
        if match:
            return proc, int(match.group(1))
        if not line and proc.poll() is not None:
            break
    raise SystemExit(f"bench/plant.py: the console did not start (exit {proc.poll()})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames per run")
    parser.add_argument("--rounds", type=int, default=3, help="plain/plant pairs, interleaved")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pace", type=float, default=0.6, help="trigger rate as a fraction of the expert-only rate (default 0.6)")
    parser.add_argument("--workdir", type=Path, help="keep the exported model here between runs (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--clients", type=int, nargs=3, metavar=("METRICS_PORT", "CONSOLE_PORT", "BROKER_PORT"),
                        help=argparse.SUPPRESS)  # internal: the clients' process
    args = parser.parse_args()
    if args.clients:
        return _clients_main(*args.clients)

    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.devtools.broker import MosquittoBroker
    from edge.inspector import Inspector
    from edge.sources.synthetic import SyntheticPartRenderer

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="iad-bench-plant-")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    res = args.resolution
    print(f"[bench] ViT-S/14 random weights @ {res}: exporting/measuring ...", file=sys.stderr, flush=True)
    model = exported_expert(args.workdir, "vits14", res)
    with MosquittoBroker() as broker:
        recipe_path = _write_recipe(args.workdir, model, res, args.threads, broker.port)
        recipe = load_recipe(recipe_path)
        inspector = Inspector.from_recipe(recipe, load_bank=False)
        good = SyntheticPartRenderer(res, res, 3, seed=1, defect_rate=0.0)
        build_bank(inspector.expert, (good.render(i).image for i in range(4)), recipe, progress=False).save(recipe.bank.path)
        inspector.load_bank(recipe.bank.path)
        replay = [f.image for f in (SyntheticPartRenderer(res, res, 3, seed=5, defect_rate=0.3).render(i) for i in range(8))]
        tile = np.ascontiguousarray(replay[0][None, :, :, ::-1])
        _expert_only(inspector, tile, 2)
        expert = _expert_only(inspector, tile, 10)
        rate = round(args.pace * 1000.0 / statistics.median(expert), 3)

        runs: dict[str, list[dict]] = {"plain": [], "plant": []}
        for number in range(args.rounds):
            order = ("plain", "plant") if number % 2 == 0 else ("plant", "plain")
            for name in order:
                print(f"[bench] round {number + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                runs[name].append(_run(recipe, recipe_path, inspector, broker, args.frames, replay, rate, name == "plant"))

    def pooled(name: str, key: str) -> list[float]:
        return [v for run in runs[name] for v in run[key]]

    rows = {}
    for name in ("plain", "plant"):
        lane, plc = pooled(name, "lane"), pooled(name, "plc")
        over = pooled(name, "overhead")
        rows[name] = {"lane_p50": statistics.median(lane), "lane_p99": _pct(lane, 0.99), "plc_p50": statistics.median(plc),
                      "plc_p99": _pct(plc, 0.99), "decisions": len(lane), "plc_received": len(plc),
                      "overhead_p50": statistics.median(over), "overhead_p99": _pct(over, 0.99),
                      "p99_per_round": [round(r["p99"], 1) for r in runs[name]],
                      "fail_safe": sum(r["fail_safe"] for r in runs[name])}
    for name in ("plain", "plant"):
        for key in runs[name][0]["cpu"]:
            rows[name][f"cpu_{key}"] = statistics.median(r["cpu"][key] for r in runs[name])
    rows["plant"]["ddata_received"] = sum(r["ddata"] for r in runs["plant"])
    rows["plant"]["scrapes"] = sum(r["scrapes"] for r in runs["plant"])
    rows["plant"]["console_sse_decisions"] = sum(r["sse_decisions"] for r in runs["plant"])
    p99_ratio = rows["plant"]["lane_p99"] / rows["plain"]["lane_p99"]
    p50_ratio = rows["plant"]["lane_p50"] / rows["plain"]["lane_p50"]
    plc_ratio = rows["plant"]["plc_p99"] / rows["plain"]["plc_p99"]
    overhead_ratio = rows["plant"]["overhead_p99"] / rows["plain"]["overhead_p99"]
    # each round's plant p99 against the plain p99 of the same round (run back to back): the median of these
    # is what a load spike from other processes on the machine moves least
    paired = statistics.median(a["p99"] / b["p99"] for a, b in zip(runs["plant"], runs["plain"]))

    print(f"\nplant floor on the lane: ViT-S/14 @ {res}, ORT CPU {args.threads} threads, paced at {rate:.1f} Hz "
          f"({args.pace:.0%} of expert-only {statistics.median(expert):.1f} ms), {args.frames} frames x {args.rounds} rounds each")
    head = (f"{'condition':>9} | {'lane p50':>8} | {'lane p99':>8} | {'PLC p50':>8} | {'PLC p99':>8} | {'non-expert p50/p99':>18} |"
            f" decisions | fail-safe | p99 per round")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:>9} | {r['lane_p50']:>6.1f}ms | {r['lane_p99']:>6.1f}ms | {r['plc_p50']:>6.1f}ms | {r['plc_p99']:>6.1f}ms |"
              f" {r['overhead_p50']:>7.1f} / {r['overhead_p99']:>6.1f}ms | {r['decisions']:>9} | {r['fail_safe']:>9} |"
              f" {r['p99_per_round']}")
    print("non-expert: trigger->decision minus that frame's own expert time (queue wait, tiling, scoring, publish): "
          "the part Sparkplug/metrics/console could add to, and less sensitive to other load on the machine.")
    print(f"plant: {rows['plant']['ddata_received']} DDATA at the SCADA subscriber, {rows['plant']['scrapes']} scrapes, "
          f"{rows['plant']['console_sse_decisions']} decisions streamed to the console client")
    print("CPU per decision (median over rounds; CPU time, unlike latency, barely moves with other load): station "
          f"process {rows['plain']['cpu_process_ms_per_decision']:.1f} ms plain vs "
          f"{rows['plant']['cpu_process_ms_per_decision']:.1f} ms plant; in the plant runs Sparkplug's threads "
          f"{rows['plant']['cpu_sparkplug_threads_ms_per_decision']:.2f} ms, the lane's post thread "
          f"{rows['plant']['cpu_lane_post_ms_per_decision']:.2f} ms (plain {rows['plain']['cpu_lane_post_ms_per_decision']:.2f}), "
          f"the console process {rows['plant']['cpu_console_process_ms_per_decision']:.2f} ms (nice 10)")
    print(f"lane p99 ratio plant/plain: {p99_ratio:.3f} (target <= 1.05); p50 ratio {p50_ratio:.3f}; PLC p99 ratio "
          f"{plc_ratio:.3f}; non-expert p99 ratio {overhead_ratio:.3f}; median of per-round p99 ratios {paired:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "plant", "date": time.strftime("%Y-%m-%d"), "resolution": res, "threads": args.threads,
            "frames": args.frames, "rounds": args.rounds, "paced_rate_hz": rate, "expert_p50": statistics.median(expert),
            "conditions": rows, "p99_ratio": p99_ratio, "p50_ratio": p50_ratio, "plc_p99_ratio": plc_ratio,
            "overhead_p99_ratio": overhead_ratio, "paired_p99_ratio_median": paired, "pace": args.pace,
            "load_average": os.getloadavg(),
        }, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

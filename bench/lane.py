"""Benchmark: the real-time lane with a real broker and a subscriber playing the PLC, ViT-S/14, ORT CPU.

For each resolution it measures, in one run on the same model and bank:

* expert-only: median latency of one ``expert.run`` on a ready uint8 tile, and
  the frames/s that gives back to back;
* lane, paced (triggers at ~60 % of the expert-only rate, so no queueing):
  trigger->decision latency inside the lane (p50/p99) and trigger->decision
  *received by the PLC subscriber* over mosquitto on loopback (p50/p99), and the
  ratio lane p50 / expert-only p50;
* lane, saturated (pull mode: pre-rendered frames replayed from memory, so the
  source costs nothing, as a camera's DMA buffers): frames/s in steady state,
  and ``fps_ratio`` = lane fps / expert-only fps, per round (expert alone, lane, expert alone; ``--rounds``), median;
* ``p50_ratio`` = paced lane p50 / expert-only p50 (the expert-only figures are
  measured before and after the lane runs and pooled).

    .venv/bin/python bench/lane.py [--resolutions 224 448] [--frames 20] [--threads 2] [--workdir DIR] [--json FILE]
        [--openvino]   # the INT8 graph for OpenVINO on expert.backend: openvino (needs the openvino extra)

Needs the [export] extra (torch) to export the random-weight ViT-S/14 and a
mosquitto binary. Prints a table; never asserts on absolute times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._models import exported_expert


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


class Plc:
    """Subscriber on the decision topic: trigger->received latency from the payload's trigger_time."""

    def __init__(self, host: str, port: int, topic: str):
        import paho.mqtt.client as mqtt

        self.latencies: list[float] = []
        ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="bench-plc",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.latencies.append(
            (time.time() - json.loads(m.payload)["trigger_time"]) * 1000.0)
        self.client.connect(host, port)
        self.client.loop_start()
        ready.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _recipe(workdir: Path, model: Path, resolution: int, threads: int, rate_hz, name: str, backend: str = "onnxruntime"):
    import yaml

    from edge.config import load_recipe

    source = {"type": "synthetic", "width": resolution, "height": resolution, "defect_rate": 0.3, "seed": 5}
    if rate_hz:
        source["rate_hz"] = rate_hz
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "line": "bench", "station": name,
        "source": source,
        "expert": {"backend": backend, "model": str(model), "threads": threads},
        "tiling": {"mode": "resize", "resolution": resolution},
        "bank": {"path": f"bank-{resolution}.npz"},
        "decision": {"window_ms": 60000, "fail_safe": "NG"},
        "mqtt": {"outbox": f"{name}.outbox.sqlite"},
        "archive": {"enabled": False},
    }))
    return load_recipe(path)


class ReplaySource:
    """Pre-rendered frames replayed in a loop, as a camera's DMA buffers would arrive: producing one costs nothing.

    ``rate_hz`` None: pulled as fast as the lane takes them (saturated); else pushed at that rate (paced).
    """

    def __init__(self, images: list[np.ndarray], rate_hz: float | None = None):
        self.images, self.rate_hz = images, rate_hz
        self._closed = threading.Event()

    def __iter__(self):
        from edge.types import Frame

        index = 0
        next_at = time.monotonic()
        while not self._closed.is_set():
            if self.rate_hz:
                delay = next_at - time.monotonic()
                if delay > 0 and self._closed.wait(delay):
                    return
                next_at += 1.0 / self.rate_hz
            yield Frame(image=self.images[index % len(self.images)], trigger_id=index, trigger_time=time.time(),
                        source="replay", trigger_mono=time.monotonic())
            index += 1

    def close(self) -> None:
        self._closed.set()


def _thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id (Linux /proc)."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return out


def _cpu_by_role(before: dict[int, float], after: dict[int, float], names: dict[int, str]) -> dict[str, float]:
    """CPU seconds per role: the lane's threads by name, ONNX Runtime's pool (unnamed native threads), the rest."""
    roles: dict[str, float] = {}
    for tid, cpu in after.items():
        name = names.get(tid, "onnxruntime pool / native")
        if name.startswith("paho") or "mqtt" in name.lower():
            name = "mqtt client"
        elif not name.startswith("lane-") and tid in names:
            name = "other python threads"
        roles[name] = roles.get(name, 0.0) + cpu - before.get(tid, 0.0)
    return roles


def _run_lane(recipe, inspector, broker, frames: int, source):
    from edge.station import build_lane

    plc = Plc(broker.host, broker.port, f"{recipe.topic_root}/decision")
    lane = build_lane(recipe, mqtt_host=broker.host, mqtt_port=broker.port, inspector=inspector, source=source,
                      pull=source.rate_hz is None)
    lane.link.wait_connected(10)
    latencies: list[float] = []
    decided: list[float] = []
    per_frame: list[float] = []  # lane latency / the expert's own time on the same frame (robust to CPU contention)
    lane.add_observer(lambda f, r, d: (latencies.append(d.latency_ms), decided.append(d.decided_mono),
                                       per_frame.append(d.latency_ms / d.timings["expert"]) if "expert" in d.timings else None))
    cpu_before = _thread_cpu()
    lane.start(frames)
    lane.wait()
    while len(latencies) < frames:
        time.sleep(0.01)
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    cpu = _cpu_by_role(cpu_before, _thread_cpu(), names)
    lane.stop(drain_timeout_s=5)
    time.sleep(0.2)
    plc.close()
    decided.sort()
    skip = min(2, frames // 4)  # steady state: the first decisions include thread start-up
    fps = (len(decided) - 1 - skip) / (decided[-1] - decided[skip]) if len(decided) > skip + 1 else float("nan")
    return latencies, list(plc.latencies), fps, lane.counters.snapshot(), per_frame, cpu


def _expert_only(inspector, tile: np.ndarray, runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall ms of ``runs`` expert calls; appends the process CPU ms per call to ``cpu`` (robust to other load)."""
    times = []
    c0 = time.process_time()
    for _ in range(runs):
        t = time.perf_counter()
        inspector.expert.run(tile)
        times.append((time.perf_counter() - t) * 1000.0)
    if cpu is not None:
        cpu.append((time.process_time() - c0) * 1000.0 / runs)
    return times


def bench_resolution(workdir: Path, broker, resolution: int, frames: int, threads: int, rounds: int = 3,
                     openvino: bool = False) -> dict:
    from edge.bank import build_bank
    from edge.inspector import Inspector
    from edge.sources.synthetic import SyntheticPartRenderer

    model = exported_expert(workdir, "vits14", resolution)
    backend = "onnxruntime"
    if openvino:  # the INT8 graph made for OpenVINO, on the OpenVINO backend (docs/precision.md)
        from bench._precision import quantized

        model, backend = quantized(workdir, model, resolution, False, 16, threads, "openvino"), "openvino"
    base = _recipe(workdir, model, resolution, threads, None, f"sat{resolution}", backend)
    inspector = Inspector.from_recipe(base, load_bank=False)
    renderer = SyntheticPartRenderer(resolution, resolution, 3, seed=1, defect_rate=0.0)
    bank = build_bank(inspector.expert, (renderer.render(i).image for i in range(4)), base, progress=False)
    bank.save(base.bank.path)
    inspector.load_bank(base.bank.path)
    replay = [f.image for f in (SyntheticPartRenderer(resolution, resolution, 3, seed=5, defect_rate=0.3).render(i)
                                for i in range(8))]

    tile = np.ascontiguousarray(replay[0][None, :, :, ::-1])
    _expert_only(inspector, tile, 2)
    # expert-only before and after the lane runs: the pair brackets the load other processes put on the machine
    expert_cpu: list[float] = []
    before = _expert_only(inspector, tile, max(5, frames // 2), expert_cpu)
    rate = round(0.6 * 1000.0 / statistics.median(before), 3)
    lane_lat, plc_lat, _, paced_counters, per_frame, _ = _run_lane(base, inspector, broker, frames,
                                                                   ReplaySource(replay, rate))
    # saturated: rounds of [expert alone, lane, expert alone], a ratio per round against its own bracket,
    # so a load change between rounds does not enter a ratio; the median over rounds is reported
    round_ratios, round_fps, sat_fail, cpu = [], [], 0, {}
    after: list[float] = []
    for index in range(rounds):
        pre = _expert_only(inspector, tile, max(5, frames // 2), expert_cpu if index == 0 else None)
        _, _, fps, counters, _, round_cpu = _run_lane(base, inspector, broker, frames, ReplaySource(replay))
        post = _expert_only(inspector, tile, max(5, frames // 2), expert_cpu if index == 0 else None)
        round_fps.append(fps)
        round_ratios.append(fps * statistics.median(pre + post) / 1000.0)
        sat_fail += counters["fail_safe"]
        cpu = cpu or round_cpu
        after = post
    lane_fps = statistics.median(round_fps)
    lane_cpu = 1000.0 * sum(cpu.values()) / frames
    expert_p50 = statistics.median(before + after)
    lane_p50 = statistics.median(lane_lat)
    return {
        "resolution": resolution, "backend": backend, "expert_p50": expert_p50, "expert_fps": 1000.0 / expert_p50,
        "expert_p50_before": statistics.median(before), "expert_p50_after": statistics.median(after),
        "lane_p50": lane_p50, "lane_p99": _pct(lane_lat, 0.99),
        "plc_p50": statistics.median(plc_lat) if plc_lat else float("nan"), "plc_p99": _pct(plc_lat, 0.99),
        "plc_received": len(plc_lat), "frames": frames, "lane_fps": lane_fps, "paced_rate_hz": rate,
        "fps_ratio": statistics.median(round_ratios), "fps_ratio_rounds": round_ratios, "p50_ratio": lane_p50 / expert_p50,
        "per_frame_ratio": statistics.median(per_frame) if per_frame else float("nan"),
        "fail_safe": paced_counters["fail_safe"] + sat_fail,
        # saturated run: CPU ms per frame of each thread role (the lane's own cost next to the expert's)
        # CPU time per frame, all threads: what the lane costs the machine, unaffected by other processes' load
        "expert_cpu_ms": statistics.mean(expert_cpu), "lane_cpu_ms": lane_cpu,
        "cpu_ratio": lane_cpu / statistics.mean(expert_cpu),
        "cpu_ms_per_frame": {role: 1000.0 * seconds / frames for role, seconds in sorted(cpu.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--frames", type=int, default=20, help="frames per lane run (paced and saturated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="keep exported models here between runs (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures (per resolution fps_ratio, p50_ratio) here")
    parser.add_argument("--rounds", type=int, default=3, help="saturated rounds, each bracketed by expert-only runs")
    parser.add_argument("--openvino", action="store_true",
                        help="run the INT8 graph of `iad-export quantize --runtime openvino` on the OpenVINO backend")
    args = parser.parse_args()

    from edge.devtools.broker import MosquittoBroker

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="iad-bench-lane-")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    with MosquittoBroker() as broker:
        for resolution in args.resolutions:
            print(f"[bench] ViT-S/14 random weights @ {resolution}: exporting/measuring ...", file=sys.stderr, flush=True)
            rows.append(bench_resolution(args.workdir, broker, resolution, args.frames, args.threads, args.rounds,
                                         args.openvino))
    runtime = "INT8 on OpenVINO CPU" if args.openvino else "ORT CPU"
    print(f"\nreal-time lane, ViT-S/14 (random weights), {runtime} {args.threads} threads, mosquitto on loopback, "
          f"{args.frames} frames per run")
    head = (f"{'res':>4} | {'expert p50':>10} | {'lane p50/p99 (ms)':>17} | {'PLC recv p50/p99':>16} | {'lane/expert':>11} |"
            f" {'same-frame':>10} | {'fps expert':>10} | {'fps lane':>8} | {'fps ratio':>9} | fail-safe")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['resolution']:>4} | {r['expert_p50']:>8.1f}ms | {r['lane_p50']:>7.1f} / {r['lane_p99']:>7.1f} |"
              f" {r['plc_p50']:>6.1f} / {r['plc_p99']:>7.1f} | {r['lane_p50'] / r['expert_p50']:>10.2f}x |"
              f" {r['per_frame_ratio']:>9.2f}x |"
              f" {r['expert_fps']:>10.2f} | {r['lane_fps']:>8.2f} | {r['fps_ratio']:>8.2f}x |"
              f" {r['fail_safe']} (PLC got {r['plc_received']}/{r['frames']})")
    print("lane p50/p99: trigger -> decision made; PLC recv: trigger -> decision received by the subscriber; "
          "paced at 60 % of the expert-only rate. lane/expert: lane p50 / expert-only p50 (separate runs); "
          "same-frame: median over frames of lane latency / that frame's own expert time (insensitive to other load). "
          "fps lane: saturated, frames replayed from memory (zero-cost source), steady state after 2 frames, median of "
          "rounds; fps ratio: median over rounds of lane fps / the expert-only fps measured around that round; "
          "expert-only p50 measured before and after the lane runs (targets: fps ratio >= 0.95, p50 ratio <= 1.05).")
    print("\nsaturated run, CPU ms per frame by thread (lane-inspect includes ONNX Runtime's calling thread):")
    for r in rows:
        print(f"  {r['resolution']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_ms_per_frame"].items())
              + f"; total {r['lane_cpu_ms']:.1f} vs expert-only {r['expert_cpu_ms']:.1f} (cpu ratio {r['cpu_ratio']:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "lane", "date": time.strftime("%Y-%m-%d"), "threads": args.threads,
                                         "frames": args.frames, "source": "replay (pre-rendered frames)",
                                         "resolutions": {str(r["resolution"]): r for r in rows}}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: real-time lane latency with the assistant idle vs saturated, in one run.

Everything real: mosquitto on loopback (when installed), the lane with the tiny
random DINOv2 on ONNX Runtime and a synthetic source at a fixed trigger rate,
the assistant as its own supervised process running the tiny Qwen2 GGUF in
llama.cpp. Phases alternate (idle, saturated, idle, saturated, ...) so slow
drift of a shared machine hits both alike:

* **idle**: the assistant process is up, loaded, and has no job;
* **saturated**: a feeder keeps the spool full of NG jobs, so llama.cpp
  generates continuously (with its priority lowered, pausing between tokens
  and prompt chunks while the lane's busy flag is set, and stopped by the lane
  while a frame is in flight: ``assistant.hard_yield``, as in production;
  ``--no-hard-yield`` measures without the freeze);
* **unprotected** (``--unprotected``): saturated, but at nice 0, normal
  scheduling, and a busy flag the lane never sets — what the mechanisms buy.

Prints lane latency (trigger → decision) p50/p99 per phase and the ratio
saturated / idle (target ≤ 1.10 on a 2-core machine).

    .venv/bin/python bench/isolation.py [--frames 75] [--rate 10] [--rounds 4] [--resolution 224] [--unprotected]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def prepare(workdir: Path, resolution: int, threads: int) -> tuple[Path, Path]:
    """Tiny expert + bank + tiny GGUF in ``workdir``; returns (expert_dir, gguf_path)."""
    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.expert import load_expert
    from edge.sources.synthetic import SyntheticPartRenderer
    from export.dinov2 import export_dinov2
    from export.qwen import export_qwen

    expert_dir = workdir / "expert"
    if not (expert_dir / "expert.onnx").is_file():
        export_dinov2(expert_dir, tiny=True, resolution=resolution)
    gguf_dir = workdir / "gguf"
    if not (gguf_dir / "manifest.json").is_file():
        export_qwen(gguf_dir, tiny=True, quant="Q8_0", progress=False)
    recipe = load_recipe(write_recipe(workdir, expert_dir, gguf_dir / "tiny-qwen2-Q8_0.gguf", resolution, 10.0, threads, "x", True))
    if not (workdir / "bank.npz").is_file():
        renderer = SyntheticPartRenderer(224, 224, 3, seed=3, defect_rate=0.0)
        build_bank(load_expert(recipe.expert), (renderer.render(1000 + i).image for i in range(12)), recipe,
                   progress=False).save(workdir / "bank.npz")
    return expert_dir, gguf_dir / "tiny-qwen2-Q8_0.gguf"


def prepare_region(workdir: Path, expert_dir: Path) -> tuple[Path, Path]:
    """A tiny Qwen3.5 + projector trained (small budget) for this bench's expert; returns (gguf, projector.json)."""
    from export.projector import export_projector
    from export.qwen import build_tiny_qwen35

    bundle = workdir / "region"
    if not (bundle / "projector.json").is_file():
        build_tiny_qwen35(workdir / "tiny-qwen3.5")
        export_projector(workdir / "tiny-qwen3.5", expert_dir, ["synthetic:120"], bundle, train_llm=True, epochs=8,
                         pre_tokenizer="qwen2")
    import json

    return bundle / json.loads((bundle / "projector.json").read_text())["llm"]["gguf"], bundle / "projector.json"


def write_recipe(workdir: Path, expert_dir: Path, gguf: Path, resolution: int, rate: float, threads: int,
                 name: str, protected: bool, port: int = 1883, mqtt: bool = True, hard_yield: bool = True,
                 projector: Path | None = None) -> Path:
    import yaml

    recipe = {
        # one station for every phase: the bank prepared once records it (a name per phase made each load warn)
        "version": 1, "line": "bench", "station": "iso",
        "source": {"type": "synthetic", "width": 224, "height": 224, "channels": 3, "defect_rate": 0.3, "seed": 3,
                   "rate_hz": rate},
        "expert": {"backend": "onnxruntime", "model": str(expert_dir / "expert.onnx"), "threads": threads},
        "tiling": {"mode": "resize", "resolution": resolution},
        "bank": {"path": "bank.npz"},
        "thresholds": {"image_score": 0.17, "pixel": 0.15},
        "decision": {"window_ms": 5000},
        "mqtt": {"enabled": mqtt, "host": "127.0.0.1", "port": port, "outbox": f"outbox-{name}.sqlite"},
        "archive": {"enabled": False, "path": "archive"},
        "assistant": {
            "enabled": True, "model": str(gguf), "n_ctx": 1024, "max_tokens": 512, "threads": 1, "backlog": 4,
            "spool": f"spool-{name}", "mqtt_intake": False, "max_regions": 1,
            "nice": 19 if protected else 0, "sched_idle": protected, "io_priority": "idle" if protected else "unchanged",
            # unprotected: the assistant watches a flag nobody sets, so it never yields
            "busy_signal": f"iad-busy-bench-{name}" if protected else "iad-busy-bench-nobody",
            "hard_yield": protected and hard_yield,
        },
    }
    if projector is not None:  # region tokens: the assistant injects each region as embeddings
        recipe["assistant"]["projector"] = str(projector)
    path = workdir / f"recipe-{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run_phase(recipe_path: Path, frames: int, saturate: bool, broker) -> dict:
    """One lane run of ``frames`` triggers; with ``saturate`` a feeder keeps the assistant's spool full."""
    from edge.assistant.busy_signal import BusySignal
    from edge.config import load_recipe
    from edge.station import build_lane

    recipe = load_recipe(recipe_path)
    lane = build_lane(recipe, mqtt_host=broker.host if broker else None, mqtt_port=broker.port if broker else None,
                      mqtt_enabled=broker is not None)
    latencies: list[float] = []
    fail_safe = [0]

    def observe(frame, result, decision) -> None:
        latencies.append(decision.latency_ms)
        fail_safe[0] += int(decision.fail_safe)

    lane.add_observer(observe)
    flag = BusySignal(recipe.assistant.busy_signal or "")
    lane.add_busy_listener(flag.set)  # the production hooks (the spool writer is the feeder's job here)
    freezer = None
    if recipe.assistant.hard_yield:
        from edge.assistant.freezer import AssistantFreezer

        freezer = AssistantFreezer(flag)
        lane.add_busy_listener(freezer)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    fed = ctx.Value("i", 0)
    feeder = ctx.Process(target=feed, args=(str(recipe.assistant.spool), stop, fed), daemon=True)
    if saturate:  # in its own process: the feeder must not compete with the lane for the GIL
        feeder.start()
        time.sleep(1.0)  # let the assistant get going
    lane.run(max_frames=frames)
    stop.set()
    if saturate:
        feeder.join(5)
    if freezer is not None:
        freezer.close()
    flag.set(False)
    flag.close()
    return {"latencies": latencies, "fail_safe": fail_safe[0], "jobs_fed": fed.value}


def feed(spool_dir: str, stop, fed) -> None:
    """Keep 3 NG jobs waiting in the spool, so the assistant never runs out of work (separate process)."""
    import os

    from edge.assistant.spool import write_job
    from edge.sources.synthetic import SyntheticPartRenderer

    # the feeder stands in for the job source, not for load on the line: keep it out of the lane's way
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    spool = Path(spool_dir)
    frame = SyntheticPartRenderer(224, 224, 3, seed=3).render(3000, defect="scratch")
    ng = frame.image
    ys, xs = np.nonzero(frame.ground_truth)  # the defect's own box: the assistant's twin inspection finds it there
    region = {"bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], "area_px": int(len(xs)),
              "centroid": [float(xs.mean()), float(ys.mean())], "peak": 0.3, "mean": 0.2, "location": "top", "rejects": True}
    while not stop.is_set():
        if len(list(spool.glob("*.json"))) + len(list(spool.glob("*.work"))) < 3:
            write_job(spool, {"kind": "explain", "session": "bench", "trigger_id": fed.value, "verdict": "NG",
                              "score": 0.3, "regions": [region]}, ng)
            fed.value += 1
        stop.wait(0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=75, help="Triggers per phase (default 75).")
    ap.add_argument("--rate", type=float, default=10.0, help="Trigger rate in Hz (default 10).")
    ap.add_argument("--rounds", type=int, default=4, help="Idle/saturated pairs, alternated (default 4).")
    ap.add_argument("--resolution", type=int, default=224, help="Tiny expert input size (default 224).")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the lane (default 1).")
    ap.add_argument("--unprotected", action="store_true", help="Add a saturated phase without priority/yielding.")
    ap.add_argument("--no-hard-yield", action="store_true",
                    help="Protected phases without the SIGSTOP freeze (assistant.hard_yield: false): flag + priority only.")
    ap.add_argument("--workdir", type=Path, help="Reuse models and bank from this folder.")
    ap.add_argument("--region-tokens", action="store_true",
                    help="The assistant explains with region-token injection (tiny Qwen3.5 + projector, trained first).")
    args = ap.parse_args()

    from edge.assistant.supervisor import AssistantSupervisor
    from edge.devtools.broker import MosquittoBroker, find_mosquitto

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="iad-bench-isolation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    expert_dir, gguf = prepare(workdir, args.resolution, args.threads)
    projector = None
    if args.region_tokens:
        gguf, projector = prepare_region(workdir, expert_dir)
    broker = MosquittoBroker(workdir=workdir / "mosquitto").start() if find_mosquitto() else None
    port = broker.port if broker else 1883
    phases = {"idle": [], "saturated": [], "unprotected": []}
    stats: dict[str, list] = {k: [] for k in phases}
    plan = [("idle", True), ("saturated", True)] * args.rounds + ([("unprotected", False)] if args.unprotected else [])
    try:
        for name, protected in plan:
            recipe = write_recipe(workdir, expert_dir, gguf, args.resolution, args.rate, args.threads,
                                  "p" if protected else "u", protected, port, broker is not None,
                                  hard_yield=not args.no_hard_yield, projector=projector)
            sup = AssistantSupervisor(recipe, ["--no-mqtt"] if broker is None else ["--mqtt-port", str(port)],
                                      log_path=workdir / "assistant.log").start()
            time.sleep(3.0)  # model loaded, priority applied, idle
            try:
                out = run_phase(recipe, args.frames, saturate=name != "idle", broker=broker)
            finally:
                sup.stop()
            phases[name] += out["latencies"]
            if name == "idle":
                stats.setdefault("idle_p99", []).append(out["latencies"])
            stats[name].append((out["fail_safe"], out["jobs_fed"], sup.restarts))
            print(f"  {name:<11} p50 {_percentile(out['latencies'], 50):7.1f} ms  p99 {_percentile(out['latencies'], 99):7.1f} ms"
                  f"  fail-safe {out['fail_safe']}  jobs fed {out['jobs_fed']}", flush=True)
    finally:
        if broker is not None:
            broker.close()
        from edge.assistant.busy_signal import BusySignal

        for flag in ("iad-busy-bench-p", "iad-busy-bench-nobody"):
            BusySignal(flag).unlink()

    print(f"\nlane latency, trigger -> decision ({args.frames} frames x {args.rounds} rounds at {args.rate:g} Hz, "
          f"tiny expert @{args.resolution}, {'tiny Qwen3.5 + region tokens' if projector else 'tiny Qwen2 GGUF'}, "
          f"broker: {'mosquitto' if broker else 'none'})")
    print(f"{'assistant':<12}{'p50 ms':>10}{'p99 ms':>10}{'frames':>8}")
    for name, lat in phases.items():
        if lat:
            print(f"{name:<12}{_percentile(lat, 50):10.1f}{_percentile(lat, 99):10.1f}{len(lat):8d}")
    idle, sat = phases["idle"], phases["saturated"]
    print(f"\nratio saturated/idle: p50 {_percentile(sat, 50) / _percentile(idle, 50):.3f}  "
          f"p99 {_percentile(sat, 99) / _percentile(idle, 99):.3f}  (target <= 1.10)")
    spread = [_percentile(lat, 99) for lat in stats["idle_p99"]] if stats.get("idle_p99") else []
    if len(spread) > 1:
        print(f"noise floor: idle p99 per round {min(spread):.1f}..{max(spread):.1f} ms "
              f"(max/min {max(spread) / min(spread):.2f}; the same assistant state, round to round)")
    if phases["unprotected"]:
        un = phases["unprotected"]
        print(f"ratio unprotected/idle: p50 {_percentile(un, 50) / _percentile(idle, 50):.3f}  "
              f"p99 {_percentile(un, 99) / _percentile(idle, 99):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

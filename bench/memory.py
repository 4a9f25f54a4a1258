"""Benchmark: resident memory of the lane, the assistant and bank calibration, each in its own process.

* **lane**: a child process loads the expert (FP32 and INT8 ViT-S/14, random
  weights) and a bank, then runs the real lane (no broker: decisions stay
  local) over replayed frames; reports RSS after the run and the peak (VmHWM).
* **assistant**: a child process loads the tiny Qwen2 GGUF with llama.cpp
  (n_ctx 2048, as the assistant does) and generates; RSS and peak. From it a
  **projection** for a Qwen3.5-4B Q4_K_M: file size (mmap, resident once the
  weights were touched) + KV cache at n_ctx + the runtime overhead measured on
  the tiny model. The file size and architecture figures are inputs
  (``--llm-gguf-gb`` etc.): nothing of that size is downloaded or measured here.
* **calibration**: a child builds a bank from N good images with 8 rotations
  (ViT-S/14 @224), for two N; the peak grows linearly in bank rows, so the
  peak for 131 072 rows (16 shots x 8 rotations at 448 px) is extrapolated
  from the two measured points.

    .venv/bin/python bench/memory.py [--json FILE] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status_mb() -> dict[str, float]:
    """VmRSS / VmHWM of this process in MiB (Linux /proc)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return {"rss_mb": values["VmRSS"], "peak_mb": values["VmHWM"]}


# ----------------------------------------------------------------------------- children
def child_lane(model: str, resolution: int, frames: int, workdir: Path) -> dict[str, Any]:
    import yaml

    from bench.lane import ReplaySource
    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.inspector import Inspector
    from edge.sources.synthetic import SyntheticPartRenderer
    from edge.station import build_lane

    start = _status_mb()
    path = workdir / f"memory-lane-{Path(model).parent.name}.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "line": "bench", "station": "memory",
        "source": {"type": "synthetic", "width": resolution, "height": resolution},
        "expert": {"backend": "onnxruntime", "model": model, "threads": 2},
        "tiling": {"mode": "resize", "resolution": resolution},
        "bank": {"path": str(workdir / f"memory-bank-{Path(model).parent.name}.npz")},
        "decision": {"window_ms": 60000}, "mqtt": {"enabled": False}, "archive": {"enabled": False},
    }))
    recipe = load_recipe(path)
    inspector = Inspector.from_recipe(recipe, load_bank=False)
    good = SyntheticPartRenderer(resolution, resolution, 3, seed=1, defect_rate=0.0)
    inspector.set_bank(build_bank(inspector.expert, (good.render(i).image for i in range(16)), recipe, progress=False))
    loaded = _status_mb()
    replay = [SyntheticPartRenderer(resolution, resolution, 3, seed=5, defect_rate=0.3).render(i).image for i in range(8)]
    lane = build_lane(recipe, inspector=inspector, source=ReplaySource(replay), pull=True, mqtt_enabled=False)
    lane.start(frames)
    lane.wait()
    time.sleep(0.5)
    lane.stop(drain_timeout_s=2)
    end = _status_mb()
    return {"model": Path(model).parent.name, "resolution": resolution, "frames": frames,
            "bank_rows": inspector.bank.size, "python_baseline_mb": start["rss_mb"],
            "loaded_rss_mb": loaded["rss_mb"], "rss_mb": end["rss_mb"], "peak_mb": end["peak_mb"],
            "decisions": lane.counters.snapshot().get("decisions")}


def child_assistant(gguf: str, n_ctx: int, generate: bool) -> dict[str, Any]:
    import llama_cpp

    start = _status_mb()
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=n_ctx, n_threads=2, verbose=False)  # KV cache allocated here
    if generate:
        llm("Region 1 at the top-left, peak 0.41: explain", max_tokens=32)
    end = _status_mb()
    return {"gguf": Path(gguf).name, "gguf_mb": Path(gguf).stat().st_size / 2**20, "n_ctx": n_ctx,
            "generated": generate, "python_baseline_mb": start["rss_mb"], "rss_mb": end["rss_mb"],
            "peak_mb": end["peak_mb"]}


def child_gguf(out_dir: str) -> dict[str, Any]:
    from export.qwen import export_qwen

    export_qwen(Path(out_dir), tiny=True, quant="Q8_0", progress=False)
    return {"gguf": str(sorted(Path(out_dir).glob("*.gguf"))[0])}


def child_calibrate(model: str, images: int, workdir: Path) -> dict[str, Any]:
    import yaml

    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.expert import load_expert
    from edge.sources.synthetic import SyntheticPartRenderer

    path = workdir / "memory-calibrate.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "source": {"type": "synthetic", "width": 224, "height": 224},
        "expert": {"backend": "onnxruntime", "model": model, "threads": 2},
        "tiling": {"mode": "resize", "resolution": 224},
        "bank": {"path": str(workdir / "memory-calibrate.npz"), "rotations": True},
    }))
    recipe = load_recipe(path)
    expert = load_expert(recipe.expert)
    good = SyntheticPartRenderer(224, 224, 3, seed=1, defect_rate=0.0)
    before = _status_mb()
    bank = build_bank(expert, (good.render(i).image for i in range(images)), recipe, progress=False)
    bank.save(recipe.bank.path)
    end = _status_mb()
    return {"images": images, "bank_rows": bank.size, "bank_mb": bank.features.nbytes / 2**20,
            "before_mb": before["rss_mb"], "peak_mb": end["peak_mb"]}


def _child(args: list[str], required: bool = True) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        if required:
            raise RuntimeError(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
        return {"error": f"exit {out.returncode}" + (" (killed by a signal)" if out.returncode < 0 else "")}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- projection
def project_llm(tiny: dict[str, Any], gguf_gb: float, layers: int, kv_layers: int, kv_heads: int, head_dim: int,
                n_ctx: int, compute_mb: float) -> dict[str, Any]:
    """RSS of a big GGUF: its size + KV cache + compute buffers + the tiny model's measured runtime overhead.

    Inputs, not measurements: the file size, the architecture (KV layers, heads, head dim) and the compute
    buffer (llama.cpp prints "CPU compute buffer size" when the context is created: take yours).
    """
    kv_mb = 2 * kv_layers * kv_heads * head_dim * n_ctx * 2 / 2**20  # K and V, f16
    overhead_mb = tiny["rss_mb"] - tiny["gguf_mb"]  # Python + llama.cpp of the tiny model, measured
    weights_mb = gguf_gb * 1024.0
    return {"gguf_gb": gguf_gb, "layers": layers, "kv_layers": kv_layers, "kv_heads": kv_heads, "head_dim": head_dim,
            "n_ctx": n_ctx, "weights_mb": weights_mb, "kv_cache_mb": kv_mb, "compute_buffer_mb": compute_mb,
            "runtime_overhead_mb": overhead_mb, "projected_rss_mb": weights_mb + kv_mb + compute_mb + overhead_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help="keep exported models here between runs")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--calib-images", type=int, nargs=2, default=[4, 16], help="two bank sizes (images x 8 rotations)")
    parser.add_argument("--llm-gguf-gb", type=float, default=2.6,
                        help="size of the Qwen3.5-4B Q4_K_M GGUF to project (default 2.6: ~4.2e9 weights x ~4.9 bits)")
    parser.add_argument("--llm-layers", type=int, default=32)
    parser.add_argument("--llm-kv-layers", type=int, default=8,
                        help="layers with a KV cache (Qwen3.5: full attention every 4th layer; the others are linear "
                             "attention with a constant-size state)")
    parser.add_argument("--llm-kv-heads", type=int, default=4)
    parser.add_argument("--llm-head-dim", type=int, default=256)
    parser.add_argument("--llm-compute-mb", type=float, default=300.0,
                        help="llama.cpp compute buffers of the big model (default 300: typical for ~4B at n_ubatch 512)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "lane":
            result = child_lane(rest[0], int(rest[1]), int(rest[2]), Path(rest[3]))
        elif kind == "assistant":
            result = child_assistant(rest[0], int(rest[1]), rest[2] == "generate")
        elif kind == "gguf":
            result = child_gguf(rest[0])
        else:
            result = child_calibrate(rest[0], int(rest[1]), Path(rest[2]))
        print(json.dumps(result))
        return 0

    from bench._models import exported_expert
    from bench._precision import quantized

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="iad-bench-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": "memory", "date": time.strftime("%Y-%m-%d")}
    fp32 = exported_expert(workdir, "vits14", 224)
    int8 = quantized(workdir, fp32, 224, False, 16, 2)
    fp32_448 = exported_expert(workdir, "vits14", 448)
    out["lane"] = [_child(["lane", str(m), str(r), str(args.frames), str(workdir)])
                   for m, r in ((fp32, 224), (int8, 224), (fp32_448, 448))]
    gguf_dir = workdir / "tiny-gguf"
    made = {} if list(gguf_dir.glob("*.gguf")) else _child(["gguf", str(gguf_dir)], required=False)
    ggufs = sorted(gguf_dir.glob("*.gguf")) or sorted(gguf_dir.glob(".export-qwen-*/out/*Q8_0.gguf"))
    if not ggufs:
        raise RuntimeError(f"no tiny GGUF could be made: {made}")
    if "error" in made:  # llama.cpp crashed in the export's verify step: the quantised file itself is complete
        _say(f"[memory] tiny GGUF export failed at verification ({made['error']}); using {ggufs[0]}")
    gguf = ggufs[0]
    tiny = _child(["assistant", str(gguf), str(args.n_ctx), "load"])
    generated = _child(["assistant", str(gguf), str(args.n_ctx), "generate"], required=False)
    tiny["generation"] = generated
    out["assistant"] = {"tiny": tiny, "projected_qwen35_4b_q4_k_m": project_llm(
        tiny, args.llm_gguf_gb, args.llm_layers, args.llm_kv_layers, args.llm_kv_heads, args.llm_head_dim, args.n_ctx,
        args.llm_compute_mb)}
    calib = [_child(["calibrate", str(fp32), str(n), str(workdir)]) for n in args.calib_images]
    (a, b) = calib
    slope = (b["peak_mb"] - a["peak_mb"]) / max(1, b["bank_rows"] - a["bank_rows"])  # MiB per bank row
    rows_448 = 131072
    out["calibration"] = {"measured": calib, "mb_per_row": slope, "rows_131k_at_448": rows_448,
                          "projected_peak_mb_131k": a["peak_mb"] + slope * (rows_448 - a["bank_rows"])}

    print("\nresident memory (MiB), each in its own process, CPU, ORT 2 threads")
    print(f"{'what':<42} {'RSS':>8} {'peak':>8}")
    for lane in out["lane"]:
        print(f"{'lane ' + lane['model'] + ' (bank ' + str(lane['bank_rows']) + ' rows)':<42} {lane['rss_mb']:>8.0f} {lane['peak_mb']:>8.0f}")
    print(f"{'assistant, tiny GGUF loaded, n_ctx ' + str(args.n_ctx):<42} {tiny['rss_mb']:>8.0f} {tiny['peak_mb']:>8.0f}")
    if "error" in generated:
        print(f"{'assistant, tiny GGUF generating':<42} not measured: llama.cpp {generated['error']}")
    else:
        print(f"{'assistant, tiny GGUF generating':<42} {generated['rss_mb']:>8.0f} {generated['peak_mb']:>8.0f}")
    proj = out["assistant"]["projected_qwen35_4b_q4_k_m"]
    print(f"{'assistant, Qwen3.5-4B Q4_K_M (projected)':<42} {proj['projected_rss_mb']:>8.0f}        -   "
          f"= weights {proj['weights_mb']:.0f} + KV {proj['kv_cache_mb']:.0f} + compute {proj['compute_buffer_mb']:.0f}"
          f" + overhead {proj['runtime_overhead_mb']:.0f}")
    for c in calib:
        print(f"{'calibration, ' + str(c['bank_rows']) + ' rows (' + str(c['images']) + ' img x 8 rot)':<42} "
              f"{'':>8} {c['peak_mb']:>8.0f}")
    print(f"{'calibration, 131072 rows (extrapolated)':<42} {'':>8} {out['calibration']['projected_peak_mb_131k']:>8.0f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

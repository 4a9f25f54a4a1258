"""Benchmark: region-expert graph alone vs the whole `inspect` path, ViT-S/14, ORT CPU.

Prints median latencies of
  * backbone-only: one ``session.run`` of the exported graph (DINOv2 + kNN head) on a ready uint8 tile;
  * end-to-end:   ``Inspector.inspect(frame)``: BGR frame -> RGB -> tile -> graph -> stitched map
                  (bilinear, sigma-4 blur) -> top-1 % score -> regions -> verdict;
and their ratio, measured in one run on the same model and bank. Target: ratio <= 1.10.

    .venv/bin/python bench/expert.py [--resolutions 224 448] [--runs 15] [--threads 2] [--json FILE]

With ``--int8`` it compares the INT8 expert (``iad-export quantize``) with the FP32
one instead (speed interleaved, fidelity on synthetic parts; see bench/_precision.py):
the ONNX Runtime INT8 graph (JSON top level), the ``--attention-int8`` variant and,
when the ``openvino`` package is installed, the ``--runtime openvino`` graph on
OpenVINO (JSON ``openvino``); every speed-up is against the FP32 graph on ONNX Runtime:

    .venv/bin/python bench/expert.py --int8 [--runs 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._models import exported_expert


def bench_resolution(workdir: Path, arch: str, resolution: int, runs: int, threads: int, bank_images: int) -> dict:
    import yaml

    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.inspector import Inspector
    from edge.sources.synthetic import SyntheticPartRenderer

    model = exported_expert(workdir, arch, resolution)
    recipe_path = workdir / f"bench-{arch}-{resolution}.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "version": 1,
        "source": {"type": "synthetic", "width": resolution, "height": resolution},
        "expert": {"backend": "onnxruntime", "model": str(model), "threads": threads},
        "tiling": {"mode": "resize", "resolution": resolution},
        "bank": {"path": f"bank-{arch}-{resolution}.npz"},
    }))
    recipe = load_recipe(recipe_path)
    renderer = SyntheticPartRenderer(resolution, resolution, 3, seed=1, defect_rate=0.0)
    inspector = Inspector.from_recipe(recipe, load_bank=False)
    bank = build_bank(inspector.expert, (renderer.render(i).image for i in range(bank_images)), recipe, progress=False)
    inspector.set_bank(bank)

    frame = SyntheticPartRenderer(resolution, resolution, 3, seed=1, defect_rate=1.0).render(99).image
    tile = np.ascontiguousarray(frame[None, :, :, ::-1])  # what the graph takes: uint8 RGB NHWC
    session = inspector.expert.session
    feeds = {"tiles": tile, "bank": bank.features}

    # alternate single calls so drift (thermal, other processes) hits both measurements alike
    for _ in range(2):
        session.run(None, feeds)
        inspector.inspect(frame)
    backbone, end_to_end, around = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feeds)
        backbone.append((time.perf_counter() - t) * 1000.0)
        t = time.perf_counter()
        result = inspector.inspect(frame)
        end_to_end.append((time.perf_counter() - t) * 1000.0)
        around.append(result.timings["total"] - result.timings["expert"])
    b, e = statistics.median(backbone), statistics.median(end_to_end)
    return {"arch": arch, "resolution": resolution, "bank": bank.size, "backbone_ms": b, "end_to_end_ms": e,
            "ratio": e / b, "outside_graph_ms": statistics.median(around)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="vits14", choices=["vits14", "vitb14"])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bank-images", type=int, default=8, help="good images in the bank (patches = images x grid^2)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep exported models here between runs")
    parser.add_argument("--int8", action="store_true", help="INT8 vs FP32: speed-up and fidelity per resolution")
    parser.add_argument("--eval-parts", type=int, default=24, help="--int8: synthetic parts (half defective) for fidelity")
    parser.add_argument("--calibration-images", type=int, default=16, help="--int8: rendered good parts to calibrate on")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="iad-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.int8:
        from bench._precision import bench_int8, print_table

        say = lambda m: print(m, file=sys.stderr, flush=True)
        rows = [bench_int8(workdir, args.arch, r, args.runs, args.threads, args.bank_images, args.eval_parts,
                           args.calibration_images, say) for r in args.resolutions]
        print_table(rows, args.threads)
        if args.json:
            args.json.write_text(json.dumps({"benchmark": "expert --int8", "date": time.strftime("%Y-%m-%d"),
                                             "threads": args.threads, "resolutions": {str(r["resolution"]): r for r in rows}},
                                            indent=2))
        return 0
    rows = [bench_resolution(workdir, args.arch, r, args.runs, args.threads, args.bank_images) for r in args.resolutions]
    print(f"\nregion expert {args.arch} (random weights), ONNX Runtime CPU, {args.threads} threads, batch 1")
    print(f"{'res':>5} {'bank':>7} {'backbone-only ms':>17} {'end-to-end ms':>14} {'ratio':>6} {'outside graph ms':>17}  target <= 1.10")
    for r in rows:
        verdict = "ok" if r["ratio"] <= 1.10 else "OVER"
        print(f"{r['resolution']:>5} {r['bank']:>7} {r['backbone_ms']:>17.1f} {r['end_to_end_ms']:>14.1f} {r['ratio']:>6.3f} "
              f"{r['outside_graph_ms']:>17.2f}  {verdict}")
    print("outside graph = preprocess + map + regions + verdict inside inspect() (median), the part the ratio is about")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "expert", "date": time.strftime("%Y-%m-%d"), "threads": args.threads,
                                         "resolutions": {str(r["resolution"]): r for r in rows}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

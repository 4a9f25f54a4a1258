"""Benchmark: how the region expert's cost grows with the bank and the frame, and what makes the large cases cheaper.

Three parts, each measured in one run (ViT-S/14 random weights, ORT CPU):

* ``bank``: one ``session.run`` on one tile vs the number of bank rows
  (1 -> 131 072, at 224 and 448 px; 131k rows = 16 shots x 8 rotations x 1024
  patches at 448), FP32 and - if ``--int8`` - the INT8 expert. The distance
  head's share is the time above the 1-row bank.
* ``frame``: ``Inspector.inspect`` of one line-scan frame in tile mode (224 px
  tiles, 25 % overlap) vs frame size 1k x 1k .. 8k x 1k: tiles sent one by one
  (max_batch 1, before) vs batched (max_batch 8) and INT8 + batched (after).
* ``coreset``: bank reduced by the greedy coreset to 10 % and 1 %: time of the
  head and the AUROC (image) / AUPRO (pixel) on synthetic parts with ground
  truth, against the full bank - the price of the approximation.

    .venv/bin/python bench/scaling.py [--parts bank frame coreset] [--runs 3] [--int8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._models import exported_expert

BANK_ROWS = (1, 1024, 8192, 32768, 131072)
FRAME_WIDTHS = (1024, 2048, 4096, 8192)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # as the product's ORT backend: no spinning (interleaved sessions would otherwise steal each other's cores)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _unit_rows(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    bank = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return bank / np.linalg.norm(bank, axis=1, keepdims=True)


def bench_bank(workdir: Path, resolution: int, runs: int, threads: int, int8: bool) -> list[dict[str, Any]]:
    from edge.sources.synthetic import SyntheticPartRenderer

    graphs = {"fp32": exported_expert(workdir, "vits14", resolution)}
    if int8:
        from bench._precision import quantized

        graphs["int8"] = quantized(workdir, graphs["fp32"], resolution, False, 16, threads)
    sessions = {name: _session(path, threads) for name, path in graphs.items()}
    image = SyntheticPartRenderer(resolution, resolution, 3, seed=1).render(3).image
    tile = np.ascontiguousarray(image[None, :, :, ::-1])
    rows_out = []
    for rows in BANK_ROWS:
        bank = _unit_rows(rows, 384)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for session in sessions.values():
            session.run(None, {"tiles": tile, "bank": bank})
        for _ in range(runs):
            for name, session in sessions.items():  # interleaved
                t = time.perf_counter()
                session.run(None, {"tiles": tile, "bank": bank})
                times[name].append((time.perf_counter() - t) * 1000.0)
        row = {"resolution": resolution, "bank_rows": rows}
        row.update({f"{name}_ms": statistics.median(v) for name, v in times.items()})
        rows_out.append(row)
        _say(f"[bank] {resolution} px, {rows} rows: " + ", ".join(f"{k} {v:.0f} ms" for k, v in row.items() if k.endswith("_ms")))
    for row in rows_out:
        for name in sessions:
            row[f"{name}_head_ms"] = row[f"{name}_ms"] - rows_out[0][f"{name}_ms"]
    return rows_out


def _tile_recipe(workdir: Path, model: Path, max_batch: int, threads: int, bank_path: Path) -> Any:
    import yaml

    from edge.config import load_recipe

    path = workdir / f"scaling-tile-{model.parent.name}-{max_batch}.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1,
        "source": {"type": "synthetic", "width": 1024, "height": 1024},
        "expert": {"backend": "onnxruntime", "model": str(model), "threads": threads},
        "tiling": {"mode": "tile", "resolution": 224, "overlap": 0.25, "max_batch": max_batch, "max_megapixels": 16.0},
        "bank": {"path": str(bank_path)},
    }))
    return load_recipe(path)


def bench_frame(workdir: Path, threads: int, int8: bool, widths: tuple[int, ...]) -> list[dict[str, Any]]:
    from edge.bank import build_bank
    from edge.expert import load_expert
    from edge.inspector import Inspector
    from edge.sources.synthetic import SyntheticPartRenderer
    from edge.tiling import plan_tiles

    fp32 = exported_expert(workdir, "vits14", 224)
    configs = [("fp32, tiles one by one", fp32, 1), ("fp32, batched x8", fp32, 8)]
    if int8:
        from bench._precision import quantized

        configs.append(("int8, batched x8", quantized(workdir, fp32, 224, False, 16, threads), 8))
    inspectors = []
    for label, model, batch in configs:
        recipe = _tile_recipe(workdir, model, batch, threads, workdir / f"scaling-bank-{model.parent.name}.npz")
        expert = load_expert(recipe.expert)
        inspector = Inspector(recipe, expert)
        good = SyntheticPartRenderer(1024, 1024, 3, seed=2, defect_rate=0.0)
        inspector.set_bank(build_bank(expert, (good.render(i).image for i in range(2)), recipe, progress=False))
        inspectors.append((label, inspector))
    rows = []
    for width in widths:
        frame = SyntheticPartRenderer(width, 1024, 3, seed=2, defect_rate=1.0).render(7).image
        row: dict[str, Any] = {"width": width, "height": 1024, "megapixels": width * 1024 / 1e6}
        for label, inspector in inspectors:
            result = inspector.inspect(frame)
            row[label] = result.timings["total"]
            row[label + " (expert)"] = result.timings["expert"]
        row["tiles"] = plan_tiles((1024, width), inspectors[0][1].recipe.tiling).num_tiles
        row["bank_rows"] = inspectors[0][1].bank.size
        rows.append(row)
        _say(f"[frame] {width}x1024 ({row['tiles']} tiles): " + ", ".join(
            f"{label} {row[label]:.0f} ms" for label, _ in inspectors))
    return rows


def bench_coreset(workdir: Path, threads: int, fractions: tuple[float, ...], good_images: int, parts: int,
                  runs: int) -> list[dict[str, Any]]:
    import yaml

    from edge.bank import Bank, build_bank, greedy_coreset
    from edge.config import load_recipe
    from edge.evaluation.metrics import auroc, pixel_metrics_exact
    from edge.expert import load_expert
    from edge.inspector import Inspector
    from edge.sources.synthetic import SyntheticPartRenderer

    model = exported_expert(workdir, "vits14", 224)
    path = workdir / "scaling-coreset.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "source": {"type": "synthetic", "width": 224, "height": 224},
        "expert": {"backend": "onnxruntime", "model": str(model), "threads": threads},
        "tiling": {"mode": "resize", "resolution": 224}, "bank": {"path": str(workdir / "scaling-coreset.npz")},
    }))
    recipe = load_recipe(path)
    expert = load_expert(recipe.expert)
    good = SyntheticPartRenderer(224, 224, 3, seed=1, defect_rate=0.0)
    full = build_bank(expert, (good.render(i).image for i in range(good_images)), recipe, progress=False)
    inspector = Inspector(recipe, expert, full)
    test = SyntheticPartRenderer(224, 224, 3, seed=1, defect_rate=0.5)
    frames = [test.render(5000 + i) for i in range(parts)]
    tile = np.ascontiguousarray(frames[0].image[None, :, :, ::-1])
    rows = []
    for fraction in (1.0, *fractions):
        if fraction < 1.0:
            size = max(1, int(round(full.size * fraction)))
            t = time.perf_counter()
            keep = greedy_coreset(full.features, size)
            select_s = time.perf_counter() - t
            features = full.features[keep]
            bank = Bank(np.ascontiguousarray(features), dict(full.meta, patches=int(size)))
        else:
            bank, select_s = full, 0.0
        inspector.set_bank(bank)
        labels, scores, masks, maps = [], [], [], []
        for frame in frames:
            result = inspector.inspect(frame.image)
            labels.append(int(frame.ground_truth is not None and frame.ground_truth.any()))
            scores.append(result.score)
            masks.append(frame.ground_truth if frame.ground_truth is not None else np.zeros(frame.image.shape[:2], bool))
            maps.append(result.anomaly_map)
        pixel = pixel_metrics_exact(masks, maps)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            expert.run(tile)
            times.append((time.perf_counter() - t) * 1000.0)
        rows.append({"fraction": fraction, "bank_rows": bank.size, "coreset_select_s": select_s,
                     "expert_ms": statistics.median(times), "image_auroc": auroc(labels, scores),
                     "pixel_aupro": float(pixel.aupro), "pixel_auroc": float(pixel.pixel_auroc)})
        _say(f"[coreset] {fraction:.0%} ({bank.size} rows): AUROC {rows[-1]['image_auroc']:.4f}, "
             f"AUPRO {rows[-1]['pixel_aupro']:.4f}, expert {rows[-1]['expert_ms']:.0f} ms")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["bank", "frame", "coreset"], choices=["bank", "frame", "coreset"])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--widths", type=int, nargs="+", default=list(FRAME_WIDTHS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also the INT8 expert (iad-export quantize)")
    parser.add_argument("--coreset", type=float, nargs="+", default=[0.1, 0.01], help="bank fractions kept by the coreset")
    parser.add_argument("--good-images", type=int, default=32, help="coreset part: good parts in the full bank")
    parser.add_argument("--eval-parts", type=int, default=40, help="coreset part: synthetic parts (half defective)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep exported models here between runs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="iad-bench-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": "scaling", "date": time.strftime("%Y-%m-%d"), "threads": args.threads}
    if "bank" in args.parts:
        out["bank"] = [row for r in args.resolutions for row in bench_bank(workdir, r, args.runs, args.threads, args.int8)]
        print("\ntime vs bank rows (one tile, ViT-S/14 random weights, ORT CPU; head = time above the 1-row bank)")
        names = [k[:-3] for k in out["bank"][0] if k.endswith("_ms") and not k.endswith("_head_ms")]
        print(f"{'res':>4} {'rows':>7} " + " ".join(f"{n + ' ms':>9} {n + ' head':>10}" for n in names))
        for row in out["bank"]:
            print(f"{row['resolution']:>4} {row['bank_rows']:>7} " + " ".join(
                f"{row[n + '_ms']:>9.1f} {row[n + '_head_ms']:>10.1f}" for n in names))
    if "frame" in args.parts:
        out["frame"] = bench_frame(workdir, args.threads, args.int8, tuple(args.widths))
        labels = [k for k in out["frame"][0] if k not in ("width", "height", "megapixels", "tiles", "bank_rows")
                  and not k.endswith("(expert)")]
        print("\ninspect() time vs frame size, tile mode 224 px / 25 % overlap (ms per frame, one run each)")
        print(f"{'frame':>10} {'MP':>5} {'tiles':>6} " + " ".join(f"{label:>24}" for label in labels))
        for row in out["frame"]:
            print(f"{row['width']:>5}x{row['height']:<4} {row['megapixels']:>5.1f} {row['tiles']:>6} "
                  + " ".join(f"{row[label]:>24.0f}" for label in labels))
    if "coreset" in args.parts:
        out["coreset"] = bench_coreset(workdir, args.threads, tuple(args.coreset), args.good_images, args.eval_parts,
                                       args.runs)
        print("\ncoreset: price of a smaller bank (224 px, synthetic parts with ground truth)")
        print(f"{'kept':>6} {'rows':>6} {'select s':>9} {'expert ms':>10} {'image AUROC':>12} {'pixel AUPRO':>12}")
        for row in out["coreset"]:
            print(f"{row['fraction']:>6.0%} {row['bank_rows']:>6} {row['coreset_select_s']:>9.2f} {row['expert_ms']:>10.1f}"
                  f" {row['image_auroc']:>12.4f} {row['pixel_aupro']:>12.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

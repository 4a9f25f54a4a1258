"""INT8 vs FP32 region expert, measured in one run: speed (interleaved calls) and fidelity on synthetic parts.

Used by ``bench/expert.py --int8``. For each resolution: export the random-weight
ViT-S/14 (FP32), quantise it with ``export.quantize.quantize_int8`` on rendered
good parts (default graph: attention matmuls FP32; plus the ``--attention-int8``
variant, and, when the ``openvino`` package is installed, the ``--runtime openvino``
graph run by OpenVINO as the ``openvino`` backend runs it), then

* **speed**: single ``session.run`` calls on one tile with a 8-image bank,
  FP32 and INT8 strictly alternating so that load from other processes hits
  both alike; ``int8_speedup`` = median FP32 ms / median INT8 ms, always
  against the FP32 graph on ONNX Runtime (also for the OpenVINO row);
* **fidelity**: every graph builds its own bank from the same good parts and
  scores the same synthetic evaluation set (good and defective parts, not the
  calibration images): ``distance_correlation`` (Pearson over all patch
  distances), ``score_spearman`` (image scores, top-1 % mean), max/mean abs
  distance error.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._models import exported_expert


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # as the product's ORT backend: no spinning (interleaved sessions would otherwise steal each other's cores)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _tiles(images: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack([im[:, :, ::-1] for im in images]))  # BGR -> RGB, as the inspector feeds


def _bank(session: Any, tiles: np.ndarray, dim: int) -> np.ndarray:
    probe = np.zeros((1, dim), dtype=np.float32)
    probe[0, 0] = 1.0
    feats = [session.run(["features"], {"tiles": tiles[i : i + 4], "bank": probe})[0] for i in range(0, len(tiles), 4)]
    return np.ascontiguousarray(np.concatenate(feats).reshape(-1, dim), dtype=np.float32)


def _distances(session: Any, tiles: np.ndarray, bank: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(["distances"], {"tiles": tiles[i : i + 4], "bank": bank})[0]
                           for i in range(0, len(tiles), 4)])


def fidelity(reference: Any, candidate: Any, good: np.ndarray, evaluation: np.ndarray, dim: int) -> dict[str, float]:
    from edge.scoring import image_score
    from export.quantize import spearman

    ref_d = _distances(reference, evaluation, _bank(reference, good, dim))
    cand_d = _distances(candidate, evaluation, _bank(candidate, good, dim))
    err = np.abs(ref_d.astype(np.float64) - cand_d)
    return {
        "distance_correlation": float(np.corrcoef(ref_d.ravel(), cand_d.ravel())[0, 1]),
        "score_spearman": spearman(np.array([image_score(d) for d in ref_d]), np.array([image_score(d) for d in cand_d])),
        "max_abs_distance_error": float(err.max()),
        "mean_abs_distance_error": float(err.mean()),
    }


def quantized(workdir: Path, fp32_model: Path, resolution: int, attention_int8: bool, calibration_images: int,
              threads: int, runtime: str = "onnxruntime") -> Path:
    """The INT8 copy of ``fp32_model`` for ``runtime`` (cached in ``workdir``)."""
    from export.quantize import calibration_set, quantize_int8, synthetic_images

    suffix = ("-att" if attention_int8 else "") + ("" if runtime == "onnxruntime" else f"-{runtime}")
    out = workdir / f"{fp32_model.parent.name}-int8{suffix}"
    if not (out / "expert.onnx").exists():
        calibration = calibration_set(synthetic_images(calibration_images, resolution, resolution, seed=11),
                                      resolution, source=f"synthetic x{calibration_images}")
        quantize_int8(fp32_model.parent, out, calibration, attention_int8=attention_int8, runtime=runtime,
                      threads=threads, progress=lambda _m: None)
    return out / "expert.onnx"


def _openvino_session(path: Path, threads: int) -> Any:
    """The graph as the OpenVINO backend runs it (the precision its manifest records), with a ``run`` like ORT's."""
    from edge.expert.manifest import load_manifest
    from edge.expert.openvino import GraphRunner, compile_graph, inference_precision

    return GraphRunner(compile_graph(path, threads, inference_precision(load_manifest(path))))


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def bench_int8(workdir: Path, arch: str, resolution: int, runs: int, threads: int, bank_images: int,
               eval_parts: int, calibration_images: int, say=print) -> dict[str, Any]:
    from edge.sources.synthetic import SyntheticPartRenderer

    fp32_path = exported_expert(workdir, arch, resolution)
    # name -> (attention_int8, runtime); every speed-up is against the FP32 graph on ONNX Runtime
    variants = {"int8": (False, "onnxruntime"), "int8_attention": (True, "onnxruntime")}
    if openvino_available():
        variants["int8_openvino"] = (False, "openvino")
    paths = {"fp32": fp32_path}
    for name, (attention, runtime) in variants.items():
        say(f"[bench] {arch} @ {resolution}: quantising ({name}) ...")
        paths[name] = quantized(workdir, fp32_path, resolution, attention, calibration_images, threads, runtime)
    on_openvino = {name for name, (_, runtime) in variants.items() if runtime == "openvino"}
    sessions = {name: _openvino_session(path, threads) if name in on_openvino else _session(path, threads)
                for name, path in paths.items()}
    dim = int(sessions["fp32"].get_outputs()[1].shape[-1])

    good_renderer = SyntheticPartRenderer(resolution, resolution, 3, seed=1, defect_rate=0.0)
    good = _tiles([good_renderer.render(i, defect=None).image for i in range(bank_images)])
    eval_renderer = SyntheticPartRenderer(resolution, resolution, 3, seed=1, defect_rate=0.5)
    evaluation = _tiles([eval_renderer.render(1000 + i).image for i in range(eval_parts)])

    say(f"[bench] {arch} @ {resolution}: fidelity on {eval_parts} synthetic parts ...")
    row: dict[str, Any] = {"arch": arch, "resolution": resolution, "eval_parts": eval_parts,
                           "calibration_images": calibration_images, "bank_images": bank_images}
    fids = {name: fidelity(sessions["fp32"], sessions[name], good, evaluation, dim) for name in variants}

    say(f"[bench] {arch} @ {resolution}: speed, {runs} interleaved calls each ...")
    bank = _bank(sessions["fp32"], good, dim)
    feeds = {"tiles": evaluation[:1], "bank": bank}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():
        session.run(None, feeds)
    for _ in range(runs):
        for name, session in sessions.items():
            t = time.perf_counter()
            session.run(None, feeds)
            times[name].append((time.perf_counter() - t) * 1000.0)
    medians = {name: statistics.median(values) for name, values in times.items()}
    row["bank_rows"] = int(bank.shape[0])
    row["fp32_ms"] = medians["fp32"]
    nested = {"int8_attention": "attention_int8", "int8_openvino": "openvino"}
    for name in variants:  # the default INT8 graph (ORT) at the top level, the other variants nested
        target = row if name == "int8" else row.setdefault(nested[name], {})
        target["int8_ms"] = medians[name]
        target["int8_speedup"] = medians["fp32"] / medians[name]
        target.update(fids[name])
    return row


def print_table(rows: list[dict[str, Any]], threads: int) -> None:
    print(f"\nINT8 vs FP32 region expert (random weights), ONNX Runtime CPU, {threads} threads, batch 1, interleaved calls")
    print(f"{'res':>4} {'graph':>15} {'FP32 ms':>8} {'INT8 ms':>8} {'speedup':>8} {'dist corr':>10} {'score Spearman':>15}"
          f" {'max|dd|':>8} {'mean|dd|':>9}")
    for r in rows:
        rows_of = [("int8", r), ("int8+attention", r["attention_int8"])]
        if "openvino" in r:
            rows_of.append(("int8 openvino", r["openvino"]))
        for label, v in rows_of:
            print(f"{r['resolution']:>4} {label:>15} {r['fp32_ms']:>8.1f} {v['int8_ms']:>8.1f} {v['int8_speedup']:>7.2f}x"
                  f" {v['distance_correlation']:>10.5f} {v['score_spearman']:>15.4f}"
                  f" {v['max_abs_distance_error']:>8.4f} {v['mean_abs_distance_error']:>9.5f}")
    print("every speedup is against the FP32 graph on ONNX Runtime; 'int8 openvino' = the INT8 graph made with "
          "`iad-export quantize --int8 --runtime openvino`, run by OpenVINO (recipe expert.backend: openvino)")
    print("targets: speedup >= 1.8x at 224 and >= 2.0x at 448, distance corr >= 0.995, score Spearman >= 0.99. "
          "Random weights: re-check real weights with the manifest's fidelity figures, and `iad-edge eval` of both "
          "recipes + `iad-edge eval --compare A.json B.json`.")

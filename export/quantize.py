"""Reduced-precision region experts from an exported FP32 expert: INT8 for CPUs, FP16 for GPUs.

* **INT8** (:func:`quantize_int8`): ONNX Runtime static quantisation in QDQ
  format, weights INT8 per output channel (symmetric), activations UINT8 per
  tensor (the U8S8 path that AVX-512 VNNI runs fastest), ranges calibrated on
  good images. Only the backbone's MatMul/Conv nodes are quantised; the
  preprocessing, every LayerNorm/Softmax and the distance head (L2 norm, bank
  matmul, max) stay FP32 (:mod:`export.precision`).
* **FP16** (:func:`convert_fp16`): weights and activations FP16 for the CUDA /
  TensorRT execution providers, with the same nodes kept FP32 and FP32 graph
  inputs/outputs, so the runtime contract (uint8 tiles + float32 bank in,
  float32 distances/features out) does not change.

Both write ``expert.onnx`` + ``manifest.json`` into a new folder (all or
nothing, like ``iad-export dinov2``). The manifest records the precision, how
the graph was made (calibration-set hash included) and its **measured
fidelity** against the FP32 expert on a hold-out: max/mean abs patch-distance
error, patch-distance correlation and the Spearman rank correlation of the
image scores. The runtime refuses a reduced-precision expert whose manifest
lacks these figures or misses the recipe's ``expert.min_fidelity``.

The fidelity protocol mirrors how the appliance uses a graph: each graph builds
its own bank from the calibration images (``iad-edge calibrate`` runs the
loaded expert), then scores the hold-out images and a damaged copy of each
(a synthetic defect, so the scores spread over good *and* bad parts).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.expert.manifest import MANIFEST_NAME, load_manifest, sha256_file
from edge.imageio import to_rgb8
from edge.scoring import image_score
from export.errors import ExportError
from export.manifest import write_manifest
from export.precision import (
    FP32_OP_TYPES,
    activation_matmul_names,
    drop_unused,
    fold_attention_scale,
    fp32_node_names,
    fuse_attention,
    name_nodes,
)

log = logging.getLogger(__name__)

MODEL_NAME = "expert.onnx"
INT8_OP_TYPES = ("MatMul", "Conv", "Gemm")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
RUNTIMES = ("onnxruntime", "openvino")
DEFAULT_HOLDOUT = 0.25
MIN_HOLDOUT = 2


@dataclass
class CalibrationSet:
    """Good images as model-sized uint8 RGB tiles, with a hash that names exactly this set."""

    tiles: np.ndarray  # uint8 [T, R, R, 3]
    image_of_tile: np.ndarray  # int [T]: which image each tile came from
    names: list[str]
    source: str
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256()
        for tile in self.tiles:
            digest.update(hashlib.sha256(np.ascontiguousarray(tile).tobytes()).digest())
        self.sha256 = digest.hexdigest()

    @property
    def images(self) -> int:
        return len(self.names)

    def split(self, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(calibration tiles, hold-out tiles): the last images (whole images, never half of one) are held out."""
        held = max(MIN_HOLDOUT, int(round(self.images * holdout_fraction)))
        if self.images - held < 2:
            raise ExportError(
                f"{self.images} calibration images are too few: need at least {held + 2} "
                f"({held} held out to measure fidelity, 2 or more to calibrate); add good images"
            )
        first_held = self.images - held
        calib = self.tiles[self.image_of_tile < first_held]
        hold = self.tiles[self.image_of_tile >= first_held]
        return calib, hold


def calibration_set(images: Iterable[tuple[str, np.ndarray]], resolution: int, recipe: Any = None,
                    source: str = "images") -> CalibrationSet:
    """Cut good images into tiles the way the runtime would: the recipe's ROI and tiling, else a resize."""
    from edge.config.expert import TilingConfig
    from edge.tiling import cut_tiles, plan_tiles

    tiling = recipe.tiling if recipe is not None else TilingConfig(mode="resize", resolution=resolution)
    if tiling.resolution != resolution:
        raise ExportError(f"the recipe's tiling.resolution is {tiling.resolution} but the expert takes {resolution}")
    roi = recipe.roi if recipe is not None else None
    tiles, owners, names = [], [], []
    for index, (name, image) in enumerate(images):
        rgb = to_rgb8(image)
        if roi is not None:
            rgb = rgb[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]
        cut = cut_tiles(rgb, plan_tiles(rgb.shape[:2], tiling, 14))
        tiles.append(cut)
        owners += [index] * len(cut)
        names.append(name)
    if not tiles:
        raise ExportError("no calibration images")
    return CalibrationSet(np.ascontiguousarray(np.concatenate(tiles)), np.asarray(owners), names, source)


def images_from_folder(folder: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Every image in ``folder`` (sorted by name)."""
    from edge.calibration.datasets import read_good

    return [(s.name, s.image) for s in read_good(Path(folder))]


def images_from_recipe(recipe: Any, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` frames from the recipe's source (the synthetic source renders good parts only here)."""
    from edge.sources import open_source

    cfg = recipe.source
    if cfg.type == "synthetic":
        cfg = cfg.model_copy(update={"defect_rate": 0.0, "rate_hz": None})
    source = open_source(cfg)
    frames: list[tuple[str, np.ndarray]] = []
    try:
        for frame in source:
            frames.append((f"{recipe.source.type}-{frame.trigger_id}", frame.image))
            if len(frames) >= count:
                break
    finally:
        source.close()
    if len(frames) < count:
        raise ExportError(f"the recipe's source gave {len(frames)} frames, {count} wanted for calibration")
    return frames


# --------------------------------------------------------------------------- OpenVINO
def openvino_precision() -> str:
    """The inference precision OpenVINO's CPU plugin picks on this machine (bf16 where the CPU has it, else f32)."""
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("--runtime openvino needs the openvino package: pip install 'iad-edge[openvino]'") from None
    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return "bf16" if name == "bf16" else "f32"


def _openvino_version() -> str:
    import openvino as ov

    return str(ov.__version__)


# --------------------------------------------------------------------------- fidelity
def _session(path: Path, threads: int = 2) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: Any, tiles: np.ndarray, bank: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    parts = [session.run(["distances", "features"], {"tiles": tiles[i : i + batch], "bank": bank})
             for i in range(0, len(tiles), batch)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the ranks)."""
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


def damaged_copies(tiles: np.ndarray, copies: int = 2, seed: int = 0) -> np.ndarray:
    """``copies`` synthetic defects per tile, so the hold-out scores spread over good and bad parts."""
    from edge.generation import synthesize_defect

    return np.stack([synthesize_defect(np.ascontiguousarray(t), seed=seed + copies * i + k).image
                     for i, t in enumerate(tiles) for k in range(copies)])


def measure_fidelity(reference: Path, candidate: Path, bank_tiles: np.ndarray, holdout_tiles: np.ndarray,
                     threads: int = 2, candidate_session: Any = None) -> dict[str, Any]:
    """Figures of ``candidate`` against the FP32 ``reference``; each graph uses a bank of its own features."""
    ref, cand = _session(reference, threads), candidate_session or _session(candidate, threads)
    dim_probe = np.zeros((1, int(ref.get_outputs()[1].shape[-1])), dtype=np.float32)
    dim_probe[0, 0] = 1.0
    _, ref_feats = _run(ref, bank_tiles, dim_probe)
    _, cand_feats = _run(cand, bank_tiles, dim_probe)
    ref_bank = np.ascontiguousarray(ref_feats.reshape(-1, ref_feats.shape[-1]), dtype=np.float32)
    cand_bank = np.ascontiguousarray(cand_feats.reshape(-1, cand_feats.shape[-1]), dtype=np.float32)
    evaluation = np.concatenate([holdout_tiles, damaged_copies(holdout_tiles)])
    ref_d, _ = _run(ref, evaluation, ref_bank)
    cand_d, _ = _run(cand, evaluation, cand_bank)
    error = np.abs(ref_d.astype(np.float64) - cand_d.astype(np.float64))
    ref_scores = np.array([image_score(d) for d in ref_d])
    cand_scores = np.array([image_score(d) for d in cand_d])
    return {
        "reference": "fp32 expert (the source of this graph), each with a bank of its own features",
        "bank_tiles": int(len(bank_tiles)),
        "bank_rows": int(ref_bank.shape[0]),
        "holdout_tiles": int(len(holdout_tiles)),
        "eval_tiles": int(len(evaluation)),
        "eval_set": "hold-out good tiles + two synthetic-defect copies of each",
        "max_abs_distance_error": float(error.max()),
        "mean_abs_distance_error": float(error.mean()),
        "distance_correlation": float(np.corrcoef(ref_d.ravel(), cand_d.ravel())[0, 1]),
        "score_spearman": spearman(ref_scores, cand_scores),
        "max_abs_score_error": float(np.abs(ref_scores - cand_scores).max()),
    }


# --------------------------------------------------------------------------- writing
def _write_expert(out_dir: Path, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``build(staging_model_path) -> manifest`` in a staging folder, then move both files into ``out_dir``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} exists and is not a folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.quantize-", dir=out_dir.parent))
    try:
        model_tmp = staging / MODEL_NAME
        manifest = build(model_tmp)
        manifest["files"] = {MODEL_NAME: {"sha256": sha256_file(model_tmp), "bytes": model_tmp.stat().st_size}}
        write_manifest(manifest, staging / MANIFEST_NAME)
        out_dir.mkdir(exist_ok=True)
        os.replace(model_tmp, out_dir / MODEL_NAME)  # model first, manifest last (see export_dinov2)
        os.replace(staging / MANIFEST_NAME, out_dir / MANIFEST_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _derived_manifest(source: dict[str, Any], source_path: Path, precision: str) -> dict[str, Any]:
    import datetime as _dt

    manifest = dict(source)
    manifest["precision"] = precision
    manifest["derived_from"] = {
        "model_sha256": source["files"][source_path.name]["sha256"],
        "precision": source.get("precision", "fp32"),
    }
    manifest["created_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return manifest


def _check_source(model_dir: Path) -> tuple[Path, dict[str, Any]]:
    from edge.errors import ModelLoadError

    model = model_dir / MODEL_NAME
    try:
        manifest = load_manifest(model)
    except ModelLoadError as exc:
        raise ExportError(str(exc)) from None
    if manifest.get("precision", "fp32") != "fp32":
        raise ExportError(f"{model} is already {manifest['precision']}: quantise the FP32 expert written by `iad-export dinov2`")
    return model, manifest


class _TileReader:
    """ONNX Runtime calibration reader: batches of tiles with a fixed bank."""

    def __init__(self, tiles: np.ndarray, bank: np.ndarray, batch: int):
        self._batches = [tiles[i : i + batch] for i in range(0, len(tiles), batch)]
        self._bank = bank
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._batches):
            return None
        batch = self._batches[self._index]
        self._index += 1
        return {"tiles": batch, "bank": self._bank}

    def rewind(self) -> None:
        self._index = 0


def _keep_if_exact(model: Any, source_model: Path, work: Path, tiles: np.ndarray, say: Callable[[str], None]) -> int:
    """Check the attention-fused FP32 graph against the source; undo the fusion (return 0) if it differs."""
    import onnx

    fused_path = work / "fused.onnx"
    onnx.save(model, str(fused_path))
    blocks = sum(1 for n in model.graph.node if n.op_type == "MultiHeadAttention")
    dim = int(_session(source_model).get_outputs()[1].shape[-1])
    bank = np.zeros((1, dim), dtype=np.float32)
    bank[0, 0] = 1.0
    ref = _run(_session(source_model), tiles, bank)
    got = _run(_session(fused_path), tiles, bank)
    fused_path.unlink()
    error = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
    if error > 1e-4:
        say(f"      attention fusion differs from the FP32 graph by {error:.2g}: not used")
        model.CopyFrom(onnx.load(str(source_model)))
        return 0
    return blocks


def quantize_int8(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    calibration: CalibrationSet,
    *,
    holdout_fraction: float = DEFAULT_HOLDOUT,
    method: str = "minmax",
    attention_int8: bool = False,
    runtime: str = "onnxruntime",
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Static QDQ INT8 expert from the FP32 expert in ``model_dir``; returns the manifest written.

    ``attention_int8`` also quantises the two activation x activation matmuls
    of every attention block (QK^T and AV): faster at high resolution, less
    faithful; off by default, the manifest says which was used.

    ``runtime`` is where the graph will run, and where its fidelity is measured:
    ``onnxruntime`` (attention fused into ORT's FP32 ``MultiHeadAttention``) or
    ``openvino`` (plain ONNX attention, which OpenVINO runs in BF16 on CPUs that
    have it, beside the integer linear layers: ≈ 3× the FP32 ORT speed here,
    docs/benchmarks.md). Calibration runs on ONNX Runtime in both cases.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    say = progress or log.info
    if method not in CALIBRATION_METHODS:
        raise ExportError(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)} (got {method!r})")
    if runtime not in RUNTIMES:
        raise ExportError(f"--runtime must be one of {', '.join(RUNTIMES)} (got {runtime!r})")
    precision_hint = openvino_precision() if runtime == "openvino" else None
    source_model, source_manifest = _check_source(Path(model_dir))
    calib_tiles, holdout_tiles = calibration.split(holdout_fraction)

    reader_cls = type("TileReader", (_TileReader, CalibrationDataReader), {})

    def build(model_tmp: Path) -> dict[str, Any]:
        work = model_tmp.parent
        named = work / "named.onnx"
        model = onnx.load(str(source_model))
        folded = fold_attention_scale(model) if attention_int8 else 0
        # the fused attention is an ONNX Runtime contrib op: only for graphs that ORT will run
        fused = 0 if attention_int8 or runtime != "onnxruntime" else fuse_attention(model, int(source_manifest["feature_dim"]))
        drop_unused(model)
        name_nodes(model)
        if fused:
            fused = _keep_if_exact(model, source_model, work, calibration.tiles[:2], say)
        fp32_nodes = fp32_node_names(model)
        attention = activation_matmul_names(model)
        excluded = sorted(set(fp32_nodes) | (set() if attention_int8 else set(attention)))
        # INT8 attention: the right-hand operands (K^T, V) as signed INT8, so QK^T and AV run the U8S8 kernels
        # (VNNI multiplies unsigned x signed bytes; an U8U8 product takes a slower path).
        by_name = {n.name: n for n in model.graph.node}
        overrides = {by_name[name].input[1]: [{"quant_type": QuantType.QInt8, "symmetric": True}]
                     for name in attention} if attention_int8 else {}
        onnx.save(model, str(named))
        probe = _session(named, threads)
        dim = int(source_manifest["feature_dim"])
        placeholder = np.zeros((1, dim), dtype=np.float32)
        placeholder[0, 0] = 1.0
        _, feats = _run(probe, calib_tiles[: min(4, len(calib_tiles))], placeholder)
        bank = np.ascontiguousarray(feats.reshape(-1, dim), dtype=np.float32)
        del probe
        say(f"[1/3] calibrating INT8 ranges ({method}) on {len(calib_tiles)} tiles; "
            f"{len(fp32_nodes)} nodes + {', '.join(FP32_OP_TYPES)} stay FP32")
        quantize_static(
            str(named),
            str(model_tmp),
            reader_cls(calib_tiles, bank, batch=4),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OP_TYPES),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            extra_options={
                # MatMul/Conv outputs stay float: ORT then fuses DQ -> MatMul (-> bias Add) into
                # MatMulIntegerToFloat instead of QLinearMatMul + DequantizeLinear + Add.
                "OpTypesToExcludeOutputQuantization": list(INT8_OP_TYPES),
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "CalibMaxIntermediateOutputs": 4,  # bounds calibration memory at high resolution
                "TensorQuantOverrides": overrides,
            },
        )
        named.unlink()
        for extra in work.glob("*.data"):
            extra.unlink()
        candidate = None
        if precision_hint is not None:
            from edge.expert.openvino import GraphRunner, compile_graph

            candidate = GraphRunner(compile_graph(model_tmp, threads, precision_hint))
        where = f"OpenVINO CPU, inference precision {precision_hint}" if precision_hint else "ONNX Runtime CPU"
        say(f"[2/3] measuring fidelity vs FP32 on {len(holdout_tiles)} hold-out tiles (+ damaged copies), {where}")
        fidelity = measure_fidelity(source_model, model_tmp, calib_tiles, holdout_tiles, threads, candidate)
        fidelity["measured_on"] = where
        del candidate
        manifest = _derived_manifest(source_manifest, source_model, "int8")
        manifest["quantization"] = {
            "method": "static",
            "format": "QDQ",
            "weights": "int8, per output channel, symmetric",
            "activations": "uint8, per tensor, asymmetric",
            "calibration_method": method,
            "quantized_op_types": list(INT8_OP_TYPES),
            "attention_matmuls": "int8" if attention_int8 else (precision_hint or "fp32"),
            "attention_scale_folded_into_query": folded,
            "attention_fused": fused,  # blocks run as com.microsoft.MultiHeadAttention (FP32, ORT only)
            "runtime": runtime,  # the backend this graph is for (expert.backend); its fidelity was measured there
            "fp32_op_types": list(FP32_OP_TYPES),
            "fp32_nodes": len(fp32_nodes),
            "fp32_parts": "preprocessing, LayerNorm, Softmax, distance head (L2 norm, bank matmul, max)"
            + ("; OpenVINO runs the graph's float ops at inference_precision" if precision_hint == "bf16" else ""),
            "onnxruntime": ort.__version__,
            **({"openvino": _openvino_version(), "inference_precision": precision_hint} if precision_hint else {}),
            "calibration": {
                "source": calibration.source,
                "images": calibration.images,
                "tiles": int(len(calibration.tiles)),
                "calibration_tiles": int(len(calib_tiles)),
                "holdout_tiles": int(len(holdout_tiles)),
                "sha256": calibration.sha256,
            },
        }
        manifest["fidelity"] = fidelity
        say(f"[3/3] fidelity: distance corr {fidelity['distance_correlation']:.5f}, score Spearman "
            f"{fidelity['score_spearman']:.4f}, max abs distance error {fidelity['max_abs_distance_error']:.4f}")
        return manifest

    return _write_expert(Path(out_dir), build)


def convert_fp16(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    calibration: CalibrationSet,
    *,
    holdout_fraction: float = DEFAULT_HOLDOUT,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """FP16 expert (weights + activations) with FP32 inputs/outputs, LayerNorm/Softmax/head in FP32.

    Parity is measured on ONNX Runtime's CPU provider, which runs FP16 kernels
    where it has them and inserts casts elsewhere: the figures are about the
    numbers, not the speed (FP16 is for the CUDA/TensorRT providers).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    say = progress or log.info
    source_model, source_manifest = _check_source(Path(model_dir))
    calib_tiles, holdout_tiles = calibration.split(holdout_fraction)

    def build(model_tmp: Path) -> dict[str, Any]:
        model = onnx.load(str(source_model))
        name_nodes(model)
        fp32_nodes = fp32_node_names(model)
        say(f"[1/2] converting to FP16; {len(fp32_nodes)} nodes + {', '.join(FP32_OP_TYPES)} stay FP32")
        half = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OP_TYPES),
                                        node_block_list=fp32_nodes)
        onnx.save(half, str(model_tmp))
        say(f"[2/2] measuring parity vs FP32 on {len(holdout_tiles)} hold-out tiles (+ damaged copies), ORT CPU")
        fidelity = measure_fidelity(source_model, model_tmp, calib_tiles, holdout_tiles, threads)
        manifest = _derived_manifest(source_manifest, source_model, "fp16")
        manifest["quantization"] = {
            "method": "fp16 cast",
            "fp32_op_types": list(FP32_OP_TYPES),
            "fp32_nodes": len(fp32_nodes),
            "fp32_parts": "preprocessing, LayerNorm, Softmax, distance head (L2 norm, bank matmul, max)",
            "io": "float32 / uint8 as the FP32 expert",
            "calibration": {"source": calibration.source, "images": calibration.images,
                            "tiles": int(len(calibration.tiles)), "sha256": calibration.sha256},
        }
        fidelity["measured_on"] = "onnxruntime CPUExecutionProvider"
        manifest["fidelity"] = fidelity
        say(f"      parity: distance corr {fidelity['distance_correlation']:.6f}, score Spearman "
            f"{fidelity['score_spearman']:.4f}, max abs distance error {fidelity['max_abs_distance_error']:.2e}")
        return manifest

    return _write_expert(Path(out_dir), build)


def synthetic_images(count: int, width: int, height: int, seed: int = 11) -> list[tuple[str, np.ndarray]]:
    """Good synthetic parts (the demo's renderer), for calibration without a folder or recipe."""
    from edge.sources.synthetic import SyntheticPartRenderer

    renderer = SyntheticPartRenderer(width, height, 3, seed=seed, defect_rate=0.0)
    return [(f"synthetic-{i:04d}", renderer.render(i, defect=None).image) for i in range(count)]


__all__: Sequence[str] = (
    "CalibrationSet", "calibration_set", "convert_fp16", "images_from_folder", "images_from_recipe",
    "measure_fidelity", "quantize_int8", "spearman", "synthetic_images",
)

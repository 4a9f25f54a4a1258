"""Region-expert ONNX -> TensorRT plan (FP16 with the sensitive layers in FP32), parity-checked, with a manifest.

Written against NVIDIA's documented Python API (``trt.Builder``,
``create_network``, ``OnnxParser``, ``create_optimization_profile``,
``IBuilderConfig.create_timing_cache/set_timing_cache``,
``build_serialized_network``). Two precision routes:

* **TensorRT 10 (JetPack 6)**, weakly typed: ``BuilderFlag.FP16`` lets TensorRT
  choose FP16 kernels; LayerNorm, Softmax and every layer of the preprocessing
  and distance head are pinned to FP32 (``layer.precision`` and
  ``set_output_type``) and ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` makes the
  builder honour that. Naive FP16 LayerNorm overflows on ViTs (large
  activations in the residual stream), and the cosine kNN head needs FP32 to
  resolve distances of ~1e-3 between good parts.
* **TensorRT 11** (no ``BuilderFlag.FP16``; networks are strongly typed), or
  ``strongly_typed=True`` on 10.x: the ONNX graph is first converted to mixed
  precision (FP16 weights/activations, the same FP32 block list, FP32 graph
  inputs/outputs) with ONNX Runtime's float16 converter, then built as a
  strongly typed network, so the types in the graph are the types that run.

The optimisation profile covers the tile batch (``tiles`` [B, R, R, 3]) and the
bank rows (``bank`` [N, D]): the bank is a graph input, so recalibration never
needs a rebuild as long as N stays inside the profile. A timing cache (one file
per TensorRT version, kept in ``engines/`` by default) makes rebuilds fast.

``tensorrt`` is imported only when a build is asked for; the logic is tested
against a test double (``tests/doubles/fake_tensorrt.py``) on machines without it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import write_bytes_atomic
from edge.expert.manifest import MANIFEST_NAME, load_manifest, sha256_file
from edge.expert.trt_check import ENGINE_NAME
from export.errors import ExportError, ParityError

log = logging.getLogger(__name__)

# ONNX op types kept in FP32 wherever they appear (Resize: the bicubic position-embedding
# interpolation, tiny and precision-sensitive).
FP32_OP_TYPES = ("LayerNormalization", "Softmax", "Resize")
# Node-name scope of the DINOv2 backbone in the exported graph: nodes outside it are the
# uint8 -> float preprocessing and the L2-normalise / cosine kNN distance head.
BACKBONE_SCOPE = "/backbone/"
# Patch + position embeddings: the position-embedding interpolation does float arithmetic on
# shapes (FP16 there breaks the Resize sizes) and is a tiny share of the compute.
EMBEDDINGS_SCOPE = "/backbone/embeddings/"
# A LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/Div (opset < 17) lives under these scopes.
_NORM_SCOPE = re.compile(r"/(norm\d*|layernorm|layer_norm)(/|$)", re.IGNORECASE)
# Parity limits of the FP16 engine against the FP32 ONNX graph.
FP16_DISTANCE_TOLERANCE = 2e-2


class EngineBuildError(ExportError):
    """The TensorRT engine could not be built as asked (nothing is written)."""


@dataclass(frozen=True)
class EngineProfile:
    """Optimisation-profile ranges (min, opt, max) of the two dynamic dimensions."""

    tiles: tuple[int, int, int] = (1, 8, 8)
    bank: tuple[int, int, int] = (1, 16384, 65536)

    def __post_init__(self) -> None:
        for name in ("tiles", "bank"):
            low, opt, high = getattr(self, name)
            if not 1 <= low <= opt <= high:
                raise EngineBuildError(f"profile {name} must satisfy 1 <= min <= opt <= max (got {low}, {opt}, {high})")

    @classmethod
    def from_limits(cls, max_tiles: int = 8, max_bank: int = 65536, opt_bank: int | None = None) -> EngineProfile:
        """The usual profile: any batch up to ``max_tiles`` (tuned for the full batch), banks up to ``max_bank``."""
        opt = min(opt_bank or max(1, max_bank // 4), max_bank)
        return cls(tiles=(1, max_tiles, max_tiles), bank=(1, opt, max_bank))


def keeps_fp32(name: str, op_type: str) -> bool:
    """True for graph nodes/layers that must run in FP32 (see module doc)."""
    if op_type in FP32_OP_TYPES:
        return True
    if not name.startswith(BACKBONE_SCOPE):
        return True  # preprocessing and distance head
    if name.startswith(EMBEDDINGS_SCOPE):
        return True
    return bool(_NORM_SCOPE.search(name))


# --- ONNX side: mixed precision for strongly typed builds ---------------------------------------


def fp32_node_names(model: Any) -> list[str]:
    """Names of the ONNX nodes that :func:`keeps_fp32` pins to FP32."""
    return [node.name for node in model.graph.node if keeps_fp32(node.name, node.op_type)]


def make_mixed_precision_onnx(onnx_path: Path, out_path: Path) -> dict[str, Any]:
    """Write an FP16 copy of the graph with the FP32 block list and FP32 inputs/outputs; return a summary.

    Uses ONNX Runtime's float16 converter (``onnxruntime.transformers.float16``,
    shipped with onnxruntime, so no extra dependency); NVIDIA's ModelOpt AutoCast
    does the same job and may be used instead on the target.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(onnx_path))
    keep = fp32_node_names(model)
    mixed = convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP32_OP_TYPES),
        node_block_list=keep,
    )
    removed = _drop_duplicate_nodes(mixed)
    _topological_sort(mixed)  # the converter appends its Casts at the end; TensorRT's parser needs order
    onnx.checker.check_model(mixed)
    onnx.save(mixed, str(out_path))
    return {"fp32_nodes": len(keep), "nodes": len(model.graph.node), "converter": "onnxruntime.transformers.float16",
            "duplicate_casts_removed": removed}


def _topological_sort(model: Any) -> None:
    """Reorder ``model.graph.node`` so every node comes after the producers of its inputs (stable)."""
    produced = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    pending = list(model.graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in produced for i in n.input)]
        if not ready:
            raise EngineBuildError(f"mixed-precision graph has a cycle or a dangling input near node {pending[0].name!r}")
        ready_ids = {id(n) for n in ready}
        for node in ready:
            ordered.append(node)
            produced.update(node.output)
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del model.graph.node[:]
    model.graph.node.extend(copies)


def _drop_duplicate_nodes(model: Any) -> int:
    """Remove exact duplicates of a node (and of its value_info) from the graph; return how many.

    onnxruntime <= 1.31's converter inserts one identical Cast (same name, same
    output) per FP32 consumer of an FP16 tensor, which is an invalid graph
    ("two nodes with same node name"); 1.32 shares one Cast. Dropping the exact
    copies gives the 1.32 result on either version.
    """
    seen: set[bytes] = set()
    keep = []
    for node in model.graph.node:
        key = node.SerializeToString(deterministic=True)
        if key in seen:
            continue
        seen.add(key)
        keep.append(node)
    removed = len(model.graph.node) - len(keep)
    if removed:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        infos, names = [], set()
        for info in model.graph.value_info:
            if info.name not in names:
                names.add(info.name)
                infos.append(info)
        del model.graph.value_info[:]
        model.graph.value_info.extend(infos)
    return removed


# --- TensorRT side -----------------------------------------------------------------------------


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineBuildError(
            "building an engine needs the `tensorrt` Python package and an NVIDIA GPU (JetPack ships it); "
            "alternatively let ONNX Runtime's TensorRT execution provider build and cache it (docs/engines.md)"
        ) from exc
    return trt


def uses_strong_typing(trt: Any, strongly_typed: bool | None) -> bool:
    """Auto: strongly typed where ``BuilderFlag.FP16`` is gone (TensorRT 11+), weakly typed + FP16 flag on 10.x."""
    if strongly_typed is not None:
        return strongly_typed
    return not hasattr(trt.BuilderFlag, "FP16")


def pin_fp32_layers(trt: Any, network: Any) -> list[str]:
    """Weakly typed FP16 build: pin LayerNorm/Softmax/head layers to FP32; return their names."""
    pinned = []
    skip_types = {getattr(trt.LayerType, n) for n in ("CONSTANT", "SHAPE", "CAST", "ASSERTION") if hasattr(trt.LayerType, n)}
    float_types = {trt.float32, trt.float16}
    type_map = {
        getattr(trt.LayerType, "NORMALIZATION", None): "LayerNormalization",
        getattr(trt.LayerType, "SOFTMAX", None): "Softmax",
        getattr(trt.LayerType, "RESIZE", None): "Resize",
    }
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in skip_types:
            continue
        if not keeps_fp32(layer.name, type_map.get(layer.type, "")):
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(t.dtype not in float_types for t in outputs):
            continue  # integer/bool shape arithmetic has no precision to pin
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def make_progress_monitor(trt: Any, enabled: bool = True) -> Any:
    """A ``trt.IProgressMonitor`` that shows the builder's phases as tqdm bars (None where unsupported).

    Engine builds take minutes on a Jetson; TensorRT reports nested phases
    (``phase_start``/``step_complete``/``phase_finish``), each becomes a bar.
    """
    base = getattr(trt, "IProgressMonitor", None)
    if base is None or not enabled:
        return None
    import threading

    from tqdm import tqdm

    class _Monitor(base):  # type: ignore[misc, valid-type]
        """TensorRT calls these from its own threads: every method takes the lock."""

        def __init__(self) -> None:
            base.__init__(self)
            self.bars: dict[str, Any] = {}
            self.depth: dict[str, int] = {}
            self.lock = threading.Lock()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self.lock:
                depth = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
                self.depth[phase_name] = depth
                self.bars[phase_name] = tqdm(total=num_steps, desc=("  " * depth) + phase_name, position=depth, leave=depth == 0)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self.lock:
                bar = self.bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self.lock:
                bar = self.bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return _Monitor()


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors or 'no detail'}")


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        log.warning("timing cache %s does not match this TensorRT/GPU; starting a fresh one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _save_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return
    data = bytes(config.get_timing_cache().serialize())
    write_bytes_atomic(path, data)


def build_plan(
    trt: Any,
    onnx_path: Path,
    profile: EngineProfile,
    resolution: int,
    feature_dim: int,
    fp16: bool = True,
    strongly_typed: bool | None = None,
    timing_cache: Path | None = None,
    workspace_bytes: int = 4 << 30,
    work_dir: Path | None = None,
    progress_bars: bool = True,
) -> tuple[bytes, dict[str, Any]]:
    """Build the serialized plan; return it with a description of how it was built."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = uses_strong_typing(trt, strongly_typed)
    info: dict[str, Any] = {"strongly_typed": strong, "precision": "fp16-mixed" if fp16 else "fp32"}
    source = onnx_path
    if strong and fp16:
        if work_dir is None:
            raise EngineBuildError("a strongly typed FP16 build needs a work folder for the mixed-precision ONNX")
        source = work_dir / "expert.fp16.onnx"
        info["mixed_precision_onnx"] = make_mixed_precision_onnx(onnx_path, source)
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)  # explicit batch: the only mode since TensorRT 10
    _parse(trt, network, logger, source)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if fp16 and not strong:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        info["fp32_layers"] = pin_fp32_layers(trt, network)
    opt_profile = builder.create_optimization_profile()
    r = resolution
    opt_profile.set_shape("tiles", (profile.tiles[0], r, r, 3), (profile.tiles[1], r, r, 3), (profile.tiles[2], r, r, 3))
    opt_profile.set_shape("bank", (profile.bank[0], feature_dim), (profile.bank[1], feature_dim), (profile.bank[2], feature_dim))
    config.add_optimization_profile(opt_profile)
    _load_timing_cache(config, timing_cache)
    monitor = make_progress_monitor(trt, progress_bars)
    if monitor is not None:
        config.progress_monitor = monitor

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    _save_timing_cache(config, timing_cache)
    return bytes(plan), info


# --- parity -----------------------------------------------------------------------------------


RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def parity_tiles(resolution: int, count: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic parts as RGB tiles: ``count`` good ones (bank + test) and ``count`` with defects."""
    import cv2

    from edge.sources.synthetic import SyntheticPartRenderer

    renderer = SyntheticPartRenderer(width=resolution, height=resolution, channels=3, seed=seed)
    good = [renderer.render(i, defect=None).image for i in range(count)]
    kinds = renderer.defect_types
    bad = [renderer.render(1000 + i, defect=kinds[i % len(kinds)]).image for i in range(count)]
    to_rgb = lambda img: cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return np.stack([to_rgb(i) for i in good]).astype(np.uint8), np.stack([to_rgb(i) for i in bad]).astype(np.uint8)


def measure_parity(
    reference: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    candidate_set_bank: Callable[[np.ndarray], None],
    candidate_run: RunFn,
    resolution: int,
    feature_dim: int,
    count: int = 8,
    batch: int = 8,
) -> dict[str, Any]:
    """Compare a candidate backend with the FP32 reference on synthetic parts.

    The bank is the reference's features of two good parts; the test set is
    the remaining good parts plus as many defect parts. Reports the max abs
    error of the patch distances and of the image scores, and whether the
    image-score ranking is preserved (same order; Spearman's rho as well).
    """
    from edge.scoring import image_score

    good, bad = parity_tiles(resolution, count)
    unit = np.zeros((1, feature_dim), np.float32)
    unit[0, 0] = 1.0
    _, feats = reference(good[:2], unit)
    bank = feats.reshape(-1, feats.shape[-1]).astype(np.float32)
    tests = np.concatenate([good[2:], bad])
    n_good = len(good) - 2
    ref_d = np.concatenate([reference(tests[i : i + batch], bank)[0] for i in range(0, len(tests), batch)])
    candidate_set_bank(bank)
    cand_d = np.concatenate([candidate_run(tests[i : i + batch])[0] for i in range(0, len(tests), batch)])
    ref_scores = np.array([image_score(d) for d in ref_d])
    cand_scores = np.array([image_score(d) for d in cand_d])
    ranks = lambda s: np.argsort(np.argsort(s))
    rho = float(np.corrcoef(ranks(ref_scores), ranks(cand_scores))[0, 1]) if len(tests) > 1 else 1.0
    return {
        "tiles": int(len(tests)),
        "bank_rows": int(bank.shape[0]),
        "distances_max_abs_error": float(np.max(np.abs(ref_d - cand_d))),
        "image_score_max_abs_error": float(np.max(np.abs(ref_scores - cand_scores))),
        "ranking_preserved": bool(np.array_equal(np.argsort(ref_scores, kind="stable"), np.argsort(cand_scores, kind="stable"))),
        "spearman": rho,
        "defects_above_good": bool(cand_scores[n_good:].min() > cand_scores[:n_good].max()) if n_good else None,
    }


class OrtReference:
    """FP32 ONNX graph on ONNX Runtime (CPU): the reference every engine is compared with."""

    def __init__(self, onnx_path: Path, feature_dim: int, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.feature_dim = feature_dim

    def __call__(self, tiles: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances, features = self.session.run(["distances", "features"], {"tiles": tiles, "bank": bank})
        return distances, features


# --- the export step --------------------------------------------------------------------------


def default_timing_cache(out_dir: Path, trt_version: str) -> Path:
    """``engines/trt-timing-<version>.cache``: beside the engine folders, shared by every build."""
    return out_dir.parent / f"trt-timing-{trt_version}.cache"


def build_engine(
    onnx_path: Path | str,
    out_dir: Path | str,
    profile: EngineProfile = EngineProfile(),
    fp16: bool = True,
    timing_cache: Path | str | None = None,
    strongly_typed: bool | None = None,
    parity: bool = True,
    workspace_gb: float = 4.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``expert.onnx`` (+ its manifest) -> ``out_dir/expert.plan`` + ``out_dir/manifest.json``; return the manifest.

    The manifest is the ONNX manifest plus a ``tensorrt`` section (version,
    GPU, compute capability, profile, precision route, FP32 layers, timing
    cache, parity) and the plan's size and sha256 under ``files``. When
    ``out_dir`` is the ONNX's folder the ONNX entry stays, so one manifest
    serves both backends. A failed build or parity check writes nothing.
    """
    say = progress or log.info
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir)
    onnx_manifest = load_manifest(onnx_path)  # sha256-checked: the engine vouches for these exact bytes
    resolution = int(onnx_manifest["resolution"])
    feature_dim = int(onnx_manifest["feature_dim"])
    trt = import_tensorrt()
    from edge.expert.cuda_memory import open_cuda

    cuda = open_cuda()
    cache_path = Path(timing_cache) if timing_cache else default_timing_cache(out_dir, trt.__version__)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".engine-") as tmp:
        work = Path(tmp)
        say(f"[engine 1/3] building TensorRT {trt.__version__} plan on {cuda.device_name()} "
            f"({'FP16 mixed' if fp16 else 'FP32'}, tiles {profile.tiles}, bank {profile.bank})")
        plan, info = build_plan(trt, onnx_path, profile, resolution, feature_dim, fp16=fp16, strongly_typed=strongly_typed,
                                timing_cache=cache_path, workspace_bytes=int(workspace_gb * (1 << 30)), work_dir=work)
        plan_tmp = work / ENGINE_NAME
        plan_tmp.write_bytes(plan)

        result = None
        if parity:
            say("[engine 2/3] parity: engine vs ONNX FP32 (ONNX Runtime CPU) on synthetic parts")
            result = engine_parity(plan_tmp, onnx_path, feature_dim, resolution, trt, cuda, min(profile.tiles[2], 8))
            tolerance = FP16_DISTANCE_TOLERANCE if fp16 else 1e-3
            if not result["distances_max_abs_error"] <= tolerance or not result["ranking_preserved"]:
                raise ParityError(
                    f"engine parity failed: distances max abs error {result['distances_max_abs_error']:.3g} "
                    f"(limit {tolerance:g}), ranking preserved {result['ranking_preserved']}; nothing written"
                )
        else:
            say("[engine 2/3] parity check skipped (--no-parity)")

        manifest = dict(onnx_manifest)
        # The ONNX entry stays first even when the plan lives elsewhere: it is the identity of the graph
        # (banks record it), and only the file being loaded is verified.
        files = {onnx_path.name: onnx_manifest["files"][onnx_path.name]}
        files[ENGINE_NAME] = {"sha256": sha256_file(plan_tmp), "bytes": plan_tmp.stat().st_size}
        manifest["files"] = files
        manifest["tensorrt"] = {
            "version": trt.__version__,
            "compute_capability": cuda.compute_capability(),
            "device_name": cuda.device_name(),
            "profile": {"tiles": list(profile.tiles), "bank": list(profile.bank)},
            "timing_cache": str(cache_path),
            "built_from": {"onnx": onnx_path.name, "sha256": onnx_manifest["files"][onnx_path.name]["sha256"]},
            "parity": result,
            **info,
        }
        say("[engine 3/3] writing plan and manifest")
        os.replace(plan_tmp, out_dir / ENGINE_NAME)
        manifest_tmp = work / MANIFEST_NAME
        manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(manifest_tmp, out_dir / MANIFEST_NAME)
    return manifest


def engine_parity(plan_path: Path, onnx_path: Path, feature_dim: int, resolution: int, trt: Any, cuda: Any, batch: int) -> dict[str, Any]:
    """Run the freshly built plan and the FP32 ONNX graph on the same synthetic parts."""
    from edge.expert.tensorrt import TrtEngineRunner

    runner = TrtEngineRunner(plan_path.read_bytes(), trt, cuda, source=str(plan_path))
    try:
        reference = OrtReference(onnx_path, feature_dim)
        return measure_parity(reference, runner.set_bank, runner.run, resolution, feature_dim, batch=batch)
    finally:
        runner.close()



# --- command-line glue (used by `iad-export engine` and `iad-export dinov2 --engine`) ------------


def add_engine_arguments(parser: Any) -> None:
    """The engine options, shared by ``iad-export engine`` and ``iad-export dinov2 --engine``."""
    group = parser.add_argument_group("TensorRT engine")
    group.add_argument("--max-tiles", type=int, default=8, help="Largest tile batch of the engine profile (default 8; >= the recipe's tiling.max_batch).")
    group.add_argument("--max-bank", type=int, default=65536, help="Largest memory bank (rows) of the engine profile (default 65536).")
    group.add_argument("--opt-bank", type=int, default=None, help="Bank rows TensorRT tunes for (default max-bank/4).")
    group.add_argument("--fp32", action="store_true", help="Build a plain FP32 engine (default: FP16 with LayerNorm/Softmax/head in FP32).")
    group.add_argument("--strongly-typed", action="store_true", default=None,
                       help="Use the mixed-precision ONNX + strongly typed route on TensorRT 10 too (always used on TensorRT 11).")
    group.add_argument("--timing-cache", type=Path, default=None, help="Timing cache file (default: engines/trt-timing-<version>.cache beside the output folder).")
    group.add_argument("--no-parity", action="store_true", help="Skip the engine-vs-ONNX parity check (not recommended).")
    group.add_argument("--workspace-gb", type=float, default=4.0, help="Builder workspace limit in GiB (default 4).")


def build_engine_from_args(args: Any, onnx_path: Path, out_dir: Path, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run :func:`build_engine` with the options of :func:`add_engine_arguments` and print what was written."""
    profile = EngineProfile.from_limits(max_tiles=args.max_tiles, max_bank=args.max_bank, opt_bank=args.opt_bank)
    manifest = build_engine(
        onnx_path, out_dir, profile, fp16=not args.fp32, timing_cache=args.timing_cache,
        strongly_typed=args.strongly_typed, parity=not args.no_parity, workspace_gb=args.workspace_gb, progress=say,
    )
    section = manifest["tensorrt"]
    plan = manifest["files"][ENGINE_NAME]
    print(f"wrote {Path(out_dir) / ENGINE_NAME} ({plan['bytes'] / 1e6:.1f} MB, sha256 {plan['sha256'][:12]}…)")
    print(f"wrote {Path(out_dir) / MANIFEST_NAME}")
    print(f"TensorRT {section['version']} on {section['device_name']} (sm {section['compute_capability']}), "
          f"{section['precision']}{', strongly typed' if section['strongly_typed'] else ''}; timing cache {section['timing_cache']}")
    parity = section.get("parity")
    if parity:
        print(f"parity vs ONNX FP32: distances max abs error {parity['distances_max_abs_error']:.2e}, "
              f"image scores max abs error {parity['image_score_max_abs_error']:.2e}, ranking preserved {parity['ranking_preserved']}")
    return manifest

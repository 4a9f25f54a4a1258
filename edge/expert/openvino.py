"""OpenVINO backend of the region expert (Intel CPUs; optional extra ``openvino``).

Why a second CPU backend: on a CPU with AMX / AVX-512 BF16 and VNNI, OpenVINO
runs the INT8 QDQ graph's linear layers as integer GEMMs *and* the attention,
GELU and the rest in BF16, where ONNX Runtime keeps everything that is not an
integer matmul in FP32. Measured on the 2-core test machine: the INT8 graph on
OpenVINO ran ≈ 3× faster than the FP32 graph on ONNX Runtime at 224 and 448 px,
ONNX Runtime's own INT8 ≈ 2× (docs/benchmarks.md).

The graph runs at the inference precision its manifest records
(``quantization.inference_precision``, the one its fidelity was measured with
by ``iad-export quantize --int8 --runtime openvino``); a graph without it (an
FP32 export) runs in FP32. A reduced-precision graph made for ONNX Runtime is
refused: its fidelity was measured there, and its fused attention is an ONNX
Runtime contrib op.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge.config.expert import OpenVinoExpertConfig
from edge.errors import BankError, ModelLoadError
from edge.expert.fidelity import check_fidelity
from edge.expert.manifest import load_manifest, manifest_path_for

log = logging.getLogger(__name__)

RUNTIME = "openvino"
PRECISIONS = ("f32", "bf16")


def graph_runtime(manifest: dict[str, Any]) -> str:
    """The runtime a graph was made and measured for (``onnxruntime`` unless the manifest says otherwise)."""
    quantization = manifest.get("quantization")
    runtime = quantization.get("runtime") if isinstance(quantization, dict) else None
    return str(runtime or "onnxruntime")


def inference_precision(manifest: dict[str, Any]) -> str:
    """The OpenVINO inference precision the graph's fidelity was measured with; FP32 when none is recorded."""
    quantization = manifest.get("quantization")
    value = quantization.get("inference_precision") if isinstance(quantization, dict) else None
    return str(value or "f32")


def compile_graph(model_path: Path, threads: int, precision: str) -> Any:
    """Compile ``model_path`` for OpenVINO's CPU plugin: latency mode, one stream, ``threads`` threads."""
    try:
        import openvino as ov  # noqa: PLC0415 - optional dependency (extra "openvino")
    except ImportError:
        raise ModelLoadError(f"{model_path}: expert.backend openvino needs the openvino package: "
                             "pip install 'iad-edge[openvino]' (or use expert.backend: onnxruntime)") from None
    if precision not in PRECISIONS:
        raise ModelLoadError(f"{model_path}: inference precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
              "INFERENCE_PRECISION_HINT": precision}
    try:
        return ov.Core().compile_model(str(model_path), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{model_path}: OpenVINO cannot load the model: {first}") from None


class GraphRunner:
    """One compiled graph and its infer request, with the ``session.run`` call shape the fidelity code uses."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in compiled.outputs]

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.request.infer(feeds)
        return [np.array(self.request.get_tensor(n).data, copy=True) for n in (names or self.output_names)]


class OpenVinoExpert:
    """The exported DINOv2 kNN graph (FP32, or INT8 made for OpenVINO) on OpenVINO's CPU plugin."""

    def __init__(self, cfg: OpenVinoExpertConfig):
        model_path = Path(cfg.model)
        self.manifest = load_manifest(model_path)
        manifest_file = manifest_path_for(model_path)
        precision = str(self.manifest.get("precision", "fp32"))
        runtime = graph_runtime(self.manifest)
        if precision != "fp32" and runtime != RUNTIME:
            raise ModelLoadError(
                f"{manifest_file}: this {precision} expert was made and measured for {runtime}; for "
                f"expert.backend: openvino re-run `iad-export quantize --int8 --runtime openvino` on the FP32 expert"
            )
        check_fidelity(self.manifest, cfg.min_fidelity, manifest_file)
        self.resolution = int(self.manifest["resolution"])
        self.patch_size = int(self.manifest["patch_size"])
        self.feature_dim = int(self.manifest["feature_dim"])
        self.precision = inference_precision(self.manifest)
        self.runner = GraphRunner(compile_graph(model_path, cfg.threads, self.precision))
        self.providers = [f"OpenVINO CPU ({self.precision})"]
        log.info("region expert %s on OpenVINO CPU, inference precision %s", self.manifest.get("architecture", "?"),
                 self.precision)
        self._bank: np.ndarray | None = None
        self._lock = threading.Lock()  # one infer request: unlike an ORT session it must not run twice at once
        self._warm_up()

    def _warm_up(self) -> None:
        """One run at load so the first real frame does not pay for lazy initialisation."""
        bank = np.zeros((1, self.feature_dim), dtype=np.float32)
        bank[0, 0] = 1.0
        tiles = np.zeros((1, self.resolution, self.resolution, 3), dtype=np.uint8)
        self.runner.run(None, {"tiles": tiles, "bank": bank})

    def set_bank(self, bank: np.ndarray) -> None:
        if bank.ndim != 2 or bank.shape[1] != self.feature_dim or bank.shape[0] == 0:
            raise BankError(f"bank shape {bank.shape} does not fit this expert (expected [N>0, {self.feature_dim}])")
        self._bank = np.ascontiguousarray(bank, dtype=np.float32)

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._bank is None:
            raise BankError("no memory bank installed: run `iad-edge calibrate` first")
        with self._lock:
            distances, features = self.runner.run(["distances", "features"], {"tiles": tiles, "bank": self._bank})
        return distances, features

    def close(self) -> None:
        self.runner = None  # type: ignore[assignment]

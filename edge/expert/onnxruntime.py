"""ONNX Runtime backend of the region expert (CPU, CUDA, or the TensorRT execution provider).

The bank is a graph input. On a GPU provider it is uploaded once per
``set_bank`` into an OrtValue on the device and bound with IOBinding, so a
frame only moves its tiles; on the CPU it is passed as a plain array (no copy).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge.config.expert import OnnxRuntimeExpertConfig
from edge.errors import BankError, ModelLoadError
from edge.expert.fidelity import check_fidelity
from edge.expert.manifest import load_manifest, manifest_path_for

log = logging.getLogger(__name__)

_PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def provider_list(cfg: OnnxRuntimeExpertConfig, manifest: dict[str, Any]) -> list[Any]:
    """Requested providers that this onnxruntime build has, with options, CPU always last."""
    if any(p != "cpu" for p in cfg.providers) and hasattr(ort, "preload_dlls"):
        try:  # onnxruntime-gpu: load the pip CUDA/cuDNN libraries before the session needs them
            ort.preload_dlls()
        except Exception as exc:  # missing libraries show up as a CPU fallback below, with a warning
            log.warning("onnxruntime could not preload the CUDA libraries: %s", exc)
    available = set(ort.get_available_providers())
    chosen: list[Any] = []
    for name in cfg.providers:
        ort_name = _PROVIDER_NAMES[name]
        if ort_name not in available:
            log.warning("execution provider %s is not available in this onnxruntime build; skipped", ort_name)
            continue
        if name == "tensorrt":
            r, d = int(manifest["resolution"]), int(manifest["feature_dim"])
            options: dict[str, Any] = {
                "trt_fp16_enable": cfg.trt_fp16,
                "trt_layer_norm_fp32_fallback": True,  # FP16 LayerNorm overflows on ViTs
                "trt_max_workspace_size": 4 << 30,
                # one profile covering the tile batch and bank sizes, so shape changes never rebuild
                "trt_profile_min_shapes": f"tiles:1x{r}x{r}x3,bank:1x{d}",
                "trt_profile_opt_shapes": f"tiles:{cfg.trt_max_tiles}x{r}x{r}x3,bank:{cfg.trt_max_bank // 2}x{d}",
                "trt_profile_max_shapes": f"tiles:{cfg.trt_max_tiles}x{r}x{r}x3,bank:{cfg.trt_max_bank}x{d}",
            }
            if cfg.trt_cache_dir is not None:
                Path(cfg.trt_cache_dir).mkdir(parents=True, exist_ok=True)
                options.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=str(cfg.trt_cache_dir),
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=str(cfg.trt_cache_dir),
                )
            chosen.append((ort_name, options))
        elif name != "cpu":
            chosen.append(ort_name)
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeExpert:
    """The exported DINOv2 kNN graph in an ONNX Runtime session."""

    def __init__(self, cfg: OnnxRuntimeExpertConfig):
        model_path = Path(cfg.model)
        self.manifest = load_manifest(model_path)
        check_fidelity(self.manifest, cfg.min_fidelity, manifest_path_for(model_path))
        self.resolution = int(self.manifest["resolution"])
        self.patch_size = int(self.manifest["patch_size"])
        self.feature_dim = int(self.manifest["feature_dim"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = cfg.threads
        options.inter_op_num_threads = 1
        # Spinning workers burn a core between runs, while the lane's threads need it (see spin_wait).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.spin_wait else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=provider_list(cfg, self.manifest))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"{model_path}: ONNX Runtime cannot load the model: {exc}") from None
        self.providers = self.session.get_providers()
        wanted = [_PROVIDER_NAMES[p] for p in cfg.providers if p != "cpu"]
        if wanted and self.providers[0] not in wanted:  # ORT falls back to the CPU silently; say it loudly
            log.warning("asked for %s but ONNX Runtime runs the expert on %s (GPU libraries missing?)",
                        ", ".join(wanted), self.providers[0])
        log.info("region expert %s on %s", self.manifest.get("architecture", "?"), ", ".join(self.providers))
        self._on_device = self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        self._bank: np.ndarray | None = None
        self._bank_value: ort.OrtValue | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """One run at load so the first real frame does not pay for lazy initialisation."""
        bank = np.zeros((1, self.feature_dim), dtype=np.float32)
        bank[0, 0] = 1.0
        tiles = np.zeros((1, self.resolution, self.resolution, 3), dtype=np.uint8)
        self.session.run(None, {"tiles": tiles, "bank": bank})

    def set_bank(self, bank: np.ndarray) -> None:
        if bank.ndim != 2 or bank.shape[1] != self.feature_dim or bank.shape[0] == 0:
            raise BankError(f"bank shape {bank.shape} does not fit this expert (expected [N>0, {self.feature_dim}])")
        self._bank = np.ascontiguousarray(bank, dtype=np.float32)
        if self._on_device:
            self._bank_value = ort.OrtValue.ortvalue_from_numpy(self._bank, "cuda", 0)

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._bank is None:
            raise BankError("no memory bank installed: run `iad-edge calibrate` first")
        if self._bank_value is None:
            distances, features = self.session.run(["distances", "features"], {"tiles": tiles, "bank": self._bank})
            return distances, features
        binding = self.session.io_binding()
        binding.bind_cpu_input("tiles", tiles)
        binding.bind_ortvalue_input("bank", self._bank_value)
        binding.bind_output("distances")
        binding.bind_output("features")
        self.session.run_with_iobinding(binding)
        distances, features = binding.copy_outputs_to_cpu()
        return distances, features

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

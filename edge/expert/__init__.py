"""Region-expert backends, selected by the recipe's ``expert.backend``.

Backends import their heavy libraries only when chosen: a CPU box never
imports TensorRT, and the ONNX Runtime path never imports pycuda.
"""

from __future__ import annotations

from edge.config.expert import OnnxRuntimeExpertConfig, TensorRTExpertConfig
from edge.expert.base import Expert


def load_expert(cfg: object) -> Expert:
    """Create and warm up the backend the recipe asks for."""
    if isinstance(cfg, OnnxRuntimeExpertConfig):
        from edge.expert.onnxruntime import OnnxRuntimeExpert

        return OnnxRuntimeExpert(cfg)
    if isinstance(cfg, TensorRTExpertConfig):
        from edge.expert.tensorrt import TensorRTExpert

        return TensorRTExpert(cfg)
    raise TypeError(f"unknown expert configuration {type(cfg).__name__}")


__all__ = ["Expert", "load_expert"]

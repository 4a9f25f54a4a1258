"""Region-expert backends, selected by the recipe's ``expert.backend``.

The expert config class names its implementation (``implementation = "module:Class"``
in :mod:`edge.config.expert`); backends import their heavy libraries only when
chosen: a CPU box never imports TensorRT, and the ONNX Runtime path never imports pycuda.
"""

from __future__ import annotations

from typing import Any

from edge.plugins import implementation_of
from edge.types import Expert


def load_expert(cfg: Any) -> Expert:
    """Create and warm up the backend the recipe asks for."""
    expert: Expert = implementation_of(cfg)(cfg)
    return expert


__all__ = ["Expert", "load_expert"]

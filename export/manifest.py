"""Write the ``manifest.json`` of an exported expert (format ``iad-expert/1``).

The runtime side (reading and verifying) is :mod:`edge.expert.manifest`; the
format is documented in ``engines/README.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from edge.expert.manifest import MANIFEST_FORMAT, sha256_file
from export.graph import IMAGENET_MEAN, IMAGENET_STD


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the graph (recorded for reproducibility)."""
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def build_manifest(
    *,
    model_file: Path,
    architecture: str,
    resolution: int,
    patch_size: int,
    feature_dim: int,
    num_register_tokens: int,
    opset: int,
    source: dict[str, Any],
    parity_max_abs_error: float,
) -> dict[str, Any]:
    """The manifest dict for ``model_file`` (already written, so its sha256/size are final)."""
    grid = resolution // patch_size
    return {
        "format": MANIFEST_FORMAT,
        "kind": "dinov2-onnx",
        "architecture": architecture,
        "resolution": resolution,
        "patch_size": patch_size,
        "grid": [grid, grid],
        "feature_dim": feature_dim,
        "num_register_tokens": num_register_tokens,
        "opset": opset,
        "preprocessing": {
            "input": "uint8 RGB NHWC",
            "scale": "1/255",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "in_graph": True,
        },
        "distance": "1 - max cosine similarity to the bank (k=1)",
        "versions": library_versions(),
        "source": source,
        "parity_max_abs_error": parity_max_abs_error,
        "inputs": [
            {"name": "tiles", "dtype": "uint8", "shape": ["B", resolution, resolution, 3]},
            {"name": "bank", "dtype": "float32", "shape": ["N", feature_dim]},
        ],
        "outputs": [
            {"name": "distances", "dtype": "float32", "shape": ["B", grid, grid]},
            {"name": "features", "dtype": "float32", "shape": ["B", grid, grid, feature_dim]},
        ],
        "files": {model_file.name: {"sha256": sha256_file(model_file), "bytes": model_file.stat().st_size}},
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Write JSON (pretty, stable key order) to ``path``; the caller moves it into place atomically."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())

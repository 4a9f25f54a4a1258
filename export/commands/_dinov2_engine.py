"""``iad-export dinov2 … --engine``: build the TensorRT plan right after the ONNX export.

An extension of :mod:`export.commands.dinov2` (see its docstring): it adds
``--engine`` and the engine options of :func:`export.tensorrt.add_engine_arguments`,
and after the export calls the same build as ``iad-export engine``. The ONNX
export is already complete when it runs, so a failed engine build leaves a
valid ``expert.onnx`` and writes nothing of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from export.tensorrt import add_engine_arguments

    parser.add_argument("--engine", action="store_true",
                        help="Also build a TensorRT engine (expert.plan) in --out, parity-checked (needs tensorrt and an NVIDIA GPU).")
    add_engine_arguments(parser)


def after_export(args: argparse.Namespace, out_dir: Path, manifest: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any] | None:
    if not getattr(args, "engine", False):
        return None
    from export.dinov2 import MODEL_NAME
    from export.tensorrt import build_engine_from_args

    return build_engine_from_args(args, out_dir / MODEL_NAME, out_dir, say)

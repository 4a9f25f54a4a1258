"""``iad-export engine``: an exported ``expert.onnx`` -> TensorRT plan on the machine that will run it.

Why a separate command beside ``iad-export dinov2 --engine``: a TensorRT plan
is specific to the TensorRT version and GPU, so it is usually built on the
target (a Jetson) from the ONNX graph exported elsewhere; that machine needs
neither torch nor the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from export.tensorrt import add_engine_arguments

    parser = subparsers.add_parser(
        "engine",
        help="Build a TensorRT engine (expert.plan) from an exported expert.onnx, parity-checked, into its manifest.",
        description=(
            "Build expert.plan from expert.onnx (+ its manifest.json) with the TensorRT Python API: optimisation "
            "profile for tile batch and bank size, persistent timing cache, FP16 with LayerNorm/Softmax/distance head "
            "in FP32 (TensorRT 10) or a strongly typed mixed-precision build (TensorRT 11), then a parity check "
            "against the FP32 ONNX graph. Needs tensorrt and an NVIDIA GPU."
        ),
    )
    parser.add_argument("--onnx", type=Path, required=True, help="expert.onnx written by `iad-export dinov2` (manifest.json beside it).")
    parser.add_argument("--out", type=Path, default=None, help="Output folder (default: the ONNX's folder; its manifest gains the engine).")
    add_engine_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from export.tensorrt import build_engine_from_args

    build_engine_from_args(args, args.onnx, args.out or args.onnx.parent, say=lambda m: print(m, file=sys.stderr, flush=True))
    return 0

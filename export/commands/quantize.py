"""`iad-export quantize`: FP32 expert -> INT8 (CPU) or FP16 (GPU) expert with measured fidelity.

Calibration images are good parts: a folder (``--images``), the recipe's own
source (``--recipe``, cut with its ROI and tiling), or ``--synthetic N``
rendered parts (demo/tests). The last quarter of them is held out to measure
fidelity; the figures land in the new folder's ``manifest.json``.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="INT8 (static, calibrated) or FP16 copy of an exported expert, fidelity measured vs FP32.",
        description=(
            "Make a reduced-precision copy of the FP32 expert written by `iad-export dinov2`: --int8 (default) "
            "static QDQ quantisation for CPU stations, or --fp16 for the CUDA/TensorRT execution providers. "
            "Preprocessing, LayerNorm, Softmax and the distance head stay FP32. The manifest records the "
            "calibration set's hash and the fidelity measured against FP32 on held-out images; the runtime "
            "refuses the graph if that fidelity is below the recipe's expert.min_fidelity."
        ),
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="Folder of the FP32 expert.onnx + manifest.json.")
    parser.add_argument("--out", required=True, metavar="DIR", help="Output folder for the new expert.onnx + manifest.json.")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8", help="Static INT8 QDQ (default).")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="FP16 for GPU providers.")
    parser.set_defaults(precision="int8")
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument("--images", metavar="DIR", help="Folder of good images.")
    images.add_argument("--recipe", metavar="PATH", help="Take good frames from this recipe's source (ROI and tiling applied).")
    images.add_argument("--synthetic", type=int, metavar="N", help="N rendered good synthetic parts (demo, tests).")
    parser.add_argument("--count", type=int, default=32, metavar="N", help="Frames taken from --recipe's source (default 32).")
    parser.add_argument("--holdout", type=float, default=0.25, metavar="F", help="Fraction of images held out for fidelity (default 0.25).")
    parser.add_argument("--calibration-method", default="minmax", choices=["minmax", "percentile", "entropy"],
                        help="How INT8 activation ranges are found (default minmax).")
    parser.add_argument("--attention-int8", action="store_true",
                        help="Also quantise the attention matmuls (QK^T, AV): faster at 448 px, less faithful.")
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"],
                        help="--int8: the backend the graph is for, and where its fidelity is measured: onnxruntime "
                             "(default; attention fused into ORT's FP32 kernel) or openvino (extra 'openvino'; Intel "
                             "CPUs, attention in BF16 where the CPU has it; recipe expert.backend: openvino).")
    parser.add_argument("--threads", type=int, default=2, help="Threads for calibration and fidelity (default 2).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.expert.manifest import load_manifest
    from export.errors import ExportError
    from export.quantize import (
        calibration_set,
        convert_fp16,
        images_from_folder,
        images_from_recipe,
        quantize_int8,
        synthetic_images,
    )

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.runtime != "onnxruntime" and args.precision != "int8":
        raise ExportError(f"--runtime {args.runtime} applies to --int8 only (--fp16 is for the CUDA/TensorRT providers)")
    if not 0.0 < args.holdout < 1.0:
        raise ExportError(f"--holdout must be between 0 and 1 (got {args.holdout})")
    from pathlib import Path

    source_manifest = load_manifest(Path(args.model) / "expert.onnx")
    resolution = int(source_manifest["resolution"])
    recipe = None
    if args.images:
        images, origin = images_from_folder(args.images), f"folder {args.images}"
    elif args.recipe:
        from edge.config import load_recipe

        recipe = load_recipe(args.recipe)
        images, origin = images_from_recipe(recipe, args.count), f"recipe {args.recipe} source ({recipe.source.type})"
    else:
        if args.synthetic < 4:
            raise ExportError(f"--synthetic needs at least 4 images (got {args.synthetic})")
        images, origin = synthetic_images(args.synthetic, 2 * resolution, 2 * resolution), f"synthetic x{args.synthetic}"
    calibration = calibration_set(images, resolution, recipe, source=origin)
    say(f"calibration set: {calibration.images} images, {len(calibration.tiles)} tiles, sha256 {calibration.sha256[:12]}…")
    if args.precision == "int8":
        manifest = quantize_int8(args.model, args.out, calibration, holdout_fraction=args.holdout,
                                 method=args.calibration_method, attention_int8=args.attention_int8,
                                 runtime=args.runtime, threads=args.threads, progress=say)
    else:
        manifest = convert_fp16(args.model, args.out, calibration, holdout_fraction=args.holdout,
                                threads=args.threads, progress=say)
    fidelity = manifest["fidelity"]
    model = manifest["files"]["expert.onnx"]
    print(f"wrote {args.out}/expert.onnx ({manifest['precision']}, {model['bytes'] / 1e6:.1f} MB, sha256 {model['sha256'][:12]}…)")
    print(f"wrote {args.out}/manifest.json")
    print(f"fidelity vs FP32: patch-distance correlation {fidelity['distance_correlation']:.5f}, image-score Spearman "
          f"{fidelity['score_spearman']:.4f}, max/mean abs distance error {fidelity['max_abs_distance_error']:.4f}/"
          f"{fidelity['mean_abs_distance_error']:.5f} ({fidelity['eval_tiles']} tiles)")
    if fidelity["eval_tiles"] < 30:
        print(f"note: fidelity measured on only {fidelity['eval_tiles']} tiles; for trustworthy figures give 32 or "
              "more good images (a quarter is held out)")
    backend = manifest.get("quantization", {}).get("runtime", "onnxruntime")
    print(f"point the recipe's expert.model at it (expert.backend: {backend}) and re-run `iad-edge calibrate` "
          "(a bank belongs to one expert)")
    return 0

"""`iad-export dinov2`: DINOv2 checkpoint (local) or --tiny -> expert.onnx + manifest.json.

Post-export steps (e.g. the TensorRT plan behind ``--engine``) plug in without
editing this file: a module ``export/commands/_dinov2_<name>.py`` (the leading
underscore keeps :mod:`export.cli` from taking it for a command) defining

* ``add_arguments(parser)`` - adds its options to ``iad-export dinov2``;
* ``after_export(args, out_dir: Path, manifest: dict, say) -> dict | None`` -
  runs after ``expert.onnx`` + ``manifest.json`` are in place (it sees the
  parsed ``args`` and does nothing unless its options were given); a returned
  dict replaces the manifest that is summarised at the end.

Extensions run in name order. The ONNX export is complete before they start, so
a failing extension leaves a valid ``expert.onnx`` (and writes nothing of its own).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

EXTENSION_PREFIX = "_dinov2_"


def extensions() -> list[ModuleType]:
    """The ``export/commands/_dinov2_*.py`` modules, imported, in name order."""
    import export.commands as package

    names = sorted(i.name for i in pkgutil.iter_modules(package.__path__) if i.name.startswith(EXTENSION_PREFIX))
    return [importlib.import_module(f"export.commands.{name}") for name in names]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dinov2",
        help="Export the DINOv2 region expert to ONNX (parity-checked, with manifest.json).",
        description=(
            "Export a DINOv2 backbone as the region-expert ONNX graph: uint8 RGB NHWC tiles + memory bank "
            "-> patch distances + L2-normalised patch features. Nothing is downloaded: the checkpoint is a "
            "local Hugging Face folder or torch-hub state dict, or --tiny for seeded random weights."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="HF folder (config.json + weights) or torch-hub .pth/.safetensors file.")
    source.add_argument("--tiny", action="store_true", help="Deterministic random tiny DINOv2 (tests, demo).")
    parser.add_argument("--resolution", type=int, default=224, metavar="R", help="Square tile size, a multiple of 14 (default 224).")
    parser.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the --tiny weights (default 0).")
    parser.add_argument("--num-heads", type=int, default=None, help="Attention heads of a non-standard torch-hub checkpoint (default: hidden/64).")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="Max abs parity error allowed (default 1e-4).")
    parser.add_argument("--out", required=True, metavar="DIR", help="Output folder for expert.onnx and manifest.json.")
    for extension in extensions():
        extension.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so `iad-export --help` stays fast and other commands work without torch.
    from export.dinov2 import MANIFEST_NAME, MODEL_NAME, export_dinov2

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    manifest = export_dinov2(
        args.out,
        checkpoint=args.checkpoint,
        tiny=args.tiny,
        resolution=args.resolution,
        opset=args.opset,
        seed=args.seed,
        num_heads=args.num_heads,
        tolerance=args.tolerance,
        progress=say,
    )
    for extension in extensions():
        updated = extension.after_export(args, Path(args.out), manifest, say)
        if updated is not None:
            manifest = updated
    model = manifest["files"][MODEL_NAME]
    print(f"wrote {args.out}/{MODEL_NAME} ({model['bytes'] / 1e6:.1f} MB, sha256 {model['sha256'][:12]}…)")
    print(f"wrote {args.out}/{MANIFEST_NAME}")
    print(
        f"{manifest['architecture']} @ {manifest['resolution']}px: grid {manifest['grid'][0]}x{manifest['grid'][1]}, "
        f"D={manifest['feature_dim']}, parity max abs error {manifest['parity_max_abs_error']:.2e}"
    )
    return 0

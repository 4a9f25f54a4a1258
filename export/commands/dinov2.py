"""`iad-export dinov2`: DINOv2 checkpoint (local) or --tiny -> expert.onnx + manifest.json."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
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
    model = manifest["files"][MODEL_NAME]
    print(f"wrote {args.out}/{MODEL_NAME} ({model['bytes'] / 1e6:.1f} MB, sha256 {model['sha256'][:12]}…)")
    print(f"wrote {args.out}/{MANIFEST_NAME}")
    print(
        f"{manifest['architecture']} @ {manifest['resolution']}px: grid {manifest['grid'][0]}x{manifest['grid'][1]}, "
        f"D={manifest['feature_dim']}, parity max abs error {manifest['parity_max_abs_error']:.2e}"
    )
    return 0

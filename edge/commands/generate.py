"""`iad-edge generate IMAGE --mask MASK --type TYPE --seed N --out FILE`: one mask-guided defect.

For operators ("what would a crack here look like?") and for building test
images by hand. Everything is checked before anything is written; the output
is replaced atomically, so a failed run leaves no file behind.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.errors import IadError
from edge.generation import DEFECT_TYPES, GenerationError, generate_defect
from edge.imageio import read_image, write_image_atomic
from edge.outputs import check_outputs, file_output


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="Synthesise a defect of a given type inside a mask (pixels outside the mask's feather band stay identical).",
        description="Mask-guided defect generation. The mask is an image of the same size; non-zero pixels mark the defect.",
    )
    p.add_argument("image", type=Path, help="Input image (gray or colour, 8 or 16 bit).")
    p.add_argument("--mask", type=Path, required=True, help="Mask image, same width and height; non-zero = defect.")
    p.add_argument("--type", dest="defect_type", required=True, help=f"Defect type: {', '.join(DEFECT_TYPES)} (or 'missing').")
    p.add_argument("--seed", type=int, default=0, help="Random seed; the same seed gives the same image (default 0).")
    p.add_argument("--out", type=Path, required=True, help="Output image, replaced if it exists; the format follows the suffix (.png keeps 16 bit).")
    p.add_argument("--feather", type=float, default=3.0, help="Fade width in px outside the mask (default 3).")
    p.add_argument("--intensity", type=float, default=1.0, help="Defect contrast, 1 = clearly visible (0 < x <= 4).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_outputs([file_output(args.out, "--out")])  # before any work
    image = read_image(args.image)
    try:
        mask = read_image(args.mask)
    except IadError as exc:
        raise GenerationError(f"mask: {exc}") from None
    try:
        gen = generate_defect(
            image, mask, args.defect_type, seed=args.seed, feather_px=args.feather, intensity=args.intensity
        )
    except GenerationError as exc:
        raise GenerationError(f"{args.mask}: {exc}") from None
    write_image_atomic(args.out, gen.image)
    print(json.dumps({"out": str(args.out), "defect_type": gen.defect_type, "seed": gen.seed,
                      "mask_px": int(gen.mask.sum()), "band_px": int(gen.band.sum())}))
    return 0

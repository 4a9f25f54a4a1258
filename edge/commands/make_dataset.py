"""`iad-edge make-dataset --synthetic --out DIR`: a small MVTec-layout dataset to try `iad-edge eval` on."""

from __future__ import annotations

import argparse

from edge.evaluation.synthetic_dataset import write_synthetic_dataset
from edge.words import count


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-dataset",
        help="Write a small synthetic dataset in MVTec AD layout.",
        description=(
            "Write a synthetic dataset in MVTec AD layout (<category>/train/good, <category>/test/<type>, "
            "<category>/ground_truth/<type>/<stem>_mask.png). Categories cycle through a colour part, a "
            "grayscale part and an odd-sized part, so every path of `iad-edge eval` is exercised."
        ),
    )
    parser.add_argument("--synthetic", action="store_true", required=True,
                        help="Render synthetic textured parts with injected defects (the only generator so far).")
    parser.add_argument("--out", required=True, help="Output folder (must not exist or be empty unless --overwrite).")
    parser.add_argument("--categories", type=int, default=3, help="Number of categories (default 3).")
    parser.add_argument("--train", type=int, default=8, help="Good training images per category (default 8).")
    parser.add_argument("--test", type=int, default=8, help="Test images per category, half good half defective (default 8).")
    parser.add_argument("--seed", type=int, default=0, help="Seed; the same seed writes the same dataset (default 0).")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="8- or 16-bit PNGs (default 8).")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output folder.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    names = write_synthetic_dataset(
        args.out,
        categories=args.categories,
        train=args.train,
        test=args.test,
        seed=args.seed,
        bit_depth=args.bit_depth,
        overwrite=args.overwrite,
    )
    print(f"wrote {count(len(names), 'category')} to {args.out}: {', '.join(names)}")
    return 0

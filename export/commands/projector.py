"""``iad-export projector``: train the region projector (optionally with the LLM) and export it with its GGUF."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "projector",
        help="Train the region projector (region evidence -> K LLM embeddings) on labelled defects; export it + GGUF.",
        description=(
            "Collect training cases from labelled data (MVTec-layout folders: type from the folder name, location and "
            "size from the ground-truth mask; or synthetic[:N[:SEED]] parts from the synthetic generator), train a "
            "2-layer MLP that maps each region's evidence to K embeddings of the LLM (the LLM frozen, or trained too "
            "with --train-llm), export the GGUF and projector.npz + projector.json, and measure held-out accuracy "
            "with the runtime (llama.cpp with injected embeddings)."
        ),
    )
    parser.add_argument("--llm", type=Path, required=True, help="Hugging Face checkpoint folder of the language model.")
    parser.add_argument("--expert", type=Path, required=True, help="Expert folder from `iad-export dinov2` (manifest.json + model).")
    parser.add_argument("--data", action="append", required=True, metavar="DATASET",
                        help="MVTec-layout dataset folder, or synthetic[:N[:SEED]] (N defective parts); repeatable.")
    parser.add_argument("--out", type=Path, required=True, help="Output folder: projector.json/.npz, GGUF + manifest.json.")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="Recipe whose tiling/ROI/pixel threshold define the regions (default: per-category threshold from 2 good images).")
    parser.add_argument("--train-llm", action="store_true", help="Also train the LLM (joint training; meant for small models).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of data split, initialisation and batches (default 0).")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="Training device (default cpu).")
    parser.add_argument("--tokens", type=int, default=4, help="K: region tokens per region (default 4).")
    parser.add_argument("--hidden", type=int, default=128, help="Hidden width of the projector MLP (default 128).")
    parser.add_argument("--epochs", type=int, default=24, help="Training epochs (default 24).")
    parser.add_argument("--batch", type=int, default=32, help="Batch size (default 32).")
    parser.add_argument("--lr", type=float, default=5e-3, help="Peak learning rate of the projector (the LLM gets half).")
    parser.add_argument("--feature-dropout", type=float, default=0.5,
                        help="Share of training pairs whose pooled patch feature is hidden (as 'unknown'), so geometry and "
                             "pixels carry the answer on a product look the feature has not seen (default 0.5).")
    parser.add_argument("--shifted-pairs", type=int, default=2,
                        help="Extra training pairs per image: the ground-truth region moved and grown as the expert's regions "
                             "are (up to a patch), so the model learns to trust the pixels over the region's centroid (default 2).")
    parser.add_argument("--budget-s", type=float, default=None, help="Stop training after this many seconds.")
    parser.add_argument("--holdout", type=float, default=0.2, help="Share of images held out for the accuracy check (default 0.2).")
    parser.add_argument("--quant", default="Q8_0", type=str.upper, help="GGUF type of the exported LLM (default Q8_0).")
    parser.add_argument("--pre-tokenizer", default=None, help="llama.cpp pre-tokenizer name if the converter does not know the tokenizer (qwen2 for the tiny models).")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch, the expert and llama.cpp).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    parser.set_defaults(func=_run)


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f} %"  # type: ignore[arg-type]


def _run(args: argparse.Namespace) -> int:
    from export.projector import export_projector

    manifest = export_projector(
        args.llm, args.expert, args.data, args.out, recipe=args.recipe, train_llm=args.train_llm, seed=args.seed,
        device=args.device, tokens=args.tokens, hidden=args.hidden, epochs=args.epochs, batch=args.batch, lr=args.lr,
        budget_s=args.budget_s, feature_dropout=args.feature_dropout, shifted_pairs=args.shifted_pairs, holdout=args.holdout, quant=args.quant, pre_tokenizer=args.pre_tokenizer,
        threads=args.threads, progress=not args.no_progress,
    )
    print(f"wrote {args.out / 'projector.json'} + projector.npz (K={manifest['tokens']}, evidence {manifest['evidence']['dim']} dims)")
    print(f"wrote {args.out / manifest['llm']['gguf']} (+ manifest.json){' trained jointly' if args.train_llm else ''}")
    hold = manifest["metrics"]["holdout"]
    print(f"held-out ({manifest['data']['holdout_images']} images): " + "; ".join(
        f"{c}: location {_fmt(hold[c]['location_accuracy'])}, type {_fmt(hold[c]['type_accuracy'])}" for c in ("predicted", "oracle", "ablation")))
    return 0

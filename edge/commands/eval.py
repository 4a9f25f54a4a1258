"""`iad-edge eval`: measure a recipe on an MVTec-layout or VisA dataset, or compare two results."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from edge.aspect import aspect_warning, inspected_size
from edge.assistant.region_reader import RegionReader
from edge.config import load_recipe
from edge.evaluation.compare import compare_table
from edge.evaluation.datasets import DatasetError, load_dataset
from edge.evaluation.operating_point import merge, operating_point, pct
from edge.evaluation.report import MARKER, check_output_dir, write_report
from edge.evaluation.runner import EvalOptions, evaluate
from edge.evaluation.understanding import evaluate_understanding
from edge.expert.manifest import manifest_path_for
from edge.imageio import read_image

log = logging.getLogger(__name__)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def _aspect_warnings(recipe: object, dataset: object) -> list[str]:
    """The aspect-ratio warning of `calibrate`/`check`, once per category (from its first training image)."""
    out = []
    for category in dataset.categories:  # type: ignore[attr-defined]
        if not category.train:
            continue
        image = read_image(category.train[0])
        size = inspected_size(recipe, (image.shape[1], image.shape[0]))
        warning = aspect_warning(size[0], size[1], recipe.tiling, f"{category.name} images")  # type: ignore[attr-defined]
        if warning:
            out.append(warning)
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        usage="iad-edge eval RECIPE DATASET --out DIR [--shots K] [--seeds N] [--seed S] [--categories A,B] "
        "[--worst N] [--overwrite] [--no-progress]\n       iad-edge eval --compare A.json B.json",
        help="Evaluate a recipe on a labelled dataset (AUROC, AUPRO, F1, location accuracy) and write a report.",
        description=(
            "Build the memory bank from each category's train/good images, score its test images with the "
            "recipe's expert, and write report.md, metrics.json, scores.csv and PNG plots to --out. "
            "DATASET is an MVTec AD folder (<category>/train/good, <category>/test/<type>, "
            "<category>/ground_truth/<type>/<stem>_mask.png) or a VisA folder with split_csv/1cls.csv. "
            "With --compare A.json B.json, print two results side by side instead."
        ),
    )
    parser.add_argument("recipe", nargs="?", help="Recipe YAML (expert, tiling, ROI, thresholds are used; its bank is not).")
    parser.add_argument("dataset", nargs="?", help="Dataset folder (MVTec AD layout or VisA with split_csv/1cls.csv).")
    parser.add_argument("--out", help="Report folder (absent, empty, or an earlier eval report, which is replaced; "
                        "anything else needs --overwrite).")
    parser.add_argument("--shots", type=int, help="Build the bank from K sampled good images instead of all of them.")
    parser.add_argument("--seeds", type=int, default=1, help="With --shots: repeat with N different samples (default 1).")
    parser.add_argument("--seed", type=int, default=0, help="First sampling seed (default 0).")
    parser.add_argument("--categories", help="Comma-separated categories to evaluate (default: all).")
    parser.add_argument("--worst", type=int, default=4, help="Worst false positives/negatives shown per category (default 4).")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty --out folder that is not an earlier eval report.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars (logs, CI).")
    parser.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="Print two metrics.json side by side.")
    parser.add_argument("--understanding", action="store_true",
                        help="Also ask the recipe's assistant model (with its projector) about every defective image: location "
                             "and type accuracy with region tokens from predicted and oracle regions, and without them (ablation).")
    parser.set_defaults(func=run, _parser=parser)


def run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args._parser
    if args.compare:
        if args.recipe or args.dataset:
            parser.error("--compare takes two metrics.json files and no RECIPE/DATASET")
        print(compare_table(*args.compare))
        return 0
    if not (args.recipe and args.dataset and args.out):
        parser.error("RECIPE, DATASET and --out are required (or use --compare A.json B.json)")
    if args.shots is not None and args.shots < 1:
        parser.error("--shots must be at least 1")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")

    out = Path(args.out)
    check_output_dir(out, args.overwrite, MARKER)  # before the long run, not after it
    recipe = load_recipe(args.recipe)
    categories = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    dataset = load_dataset(args.dataset, categories)
    for line in _aspect_warnings(recipe, dataset):
        print(f"warning: {line}", file=sys.stderr)
    options = EvalOptions(
        shots=args.shots, seeds=args.seeds, seed=args.seed, worst=args.worst, progress=not args.no_progress
    )
    reader = _understanding_reader(recipe, dataset) if args.understanding else None  # bad input fails before the run
    result = evaluate(recipe, dataset, options)
    if reader is not None:

        try:
            result.understanding = evaluate_understanding(reader, recipe, dataset, progress=not args.no_progress)
        finally:
            reader.close()
    write_report(result, out, overwrite=args.overwrite)
    shown = ("image_auroc", "pixel_auroc", "aupro", "location_accuracy")
    print(f"{'category':<24}" + "".join(f"{name:>19}" for name in shown))
    rows = [(cat.name, cat.metrics) for cat in result.categories] + [("mean", result.mean)]
    for name, values in rows:
        print(f"{name:<24}" + "".join(f"{_pct(values[k]):>19}" for k in shown))
    op = merge(operating_point(cat.runs[0].records) for cat in result.categories)
    good, bad = op["rejected_good"] + op["passed_good"], op["rejected_defective"] + op["escaped_defective"]
    print(f"at the recipe's thresholds (image_score {recipe.thresholds.image_score:g}, pixel {recipe.thresholds.pixel:g}): "
          f"false-reject rate {pct(op['false_reject_rate'])} ({op['rejected_good']}/{good} good parts rejected), "
          f"escape rate {pct(op['escape_rate'])} ({op['escaped_defective']}/{bad} defective parts passed)")
    u = getattr(result, "understanding", None)
    if u is not None:
        for cond in ("predicted", "oracle", "ablation"):
            c = u[cond]
            print(f"understanding {cond:<10} location {_pct_or_na(c['location_accuracy'])}  type {_pct_or_na(c['type_accuracy'])}  n={c['n']}")
    print(f"report: {out / 'report.md'}")
    return 0


def _pct_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _understanding_reader(recipe, dataset):  # type: ignore[no-untyped-def]
    """The recipe's model + projector, checked, and every defective test image's mask present: before the long run."""

    cfg = recipe.assistant
    if cfg.model is None or cfg.projector is None:
        raise DatasetError(f"{recipe.source_path}: --understanding needs assistant.model and assistant.projector in the recipe "
                           "(build them with `iad-export projector`)")
    for category in dataset.categories:
        missing = [s.path for s in category.test if s.label == 1 and s.mask is None]
        if missing:
            raise DatasetError(f"{missing[0]}: defective test image without a ground-truth mask ({len(missing)} in "
                               f"{category.name!r}); --understanding needs masks for the true locations")
    return RegionReader(cfg.projector, cfg.model, manifest_path_for(recipe.expert.model), threads=cfg.threads)

"""`iad-edge calibrate RECIPE --good DIR [--bank PATH] [--defects DIR] [--synthetic N] [--target-frr F]`.

Builds the memory bank from good parts, scores every good image held-out
(k-fold), scores real or synthetic defects, proposes `thresholds.image_score`
and `thresholds.pixel` for the target false-reject rate, and writes:

- the bank (``--bank`` or the recipe's ``bank.path``), atomically;
- ``<recipe>.generated.yaml`` with the thresholds (the recipe includes it; the
  technician's own file is never rewritten);
- ``<recipe>.calibration/calibration_report.md`` with PNG plots.

All inputs are read and checked before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge.calibration.datasets import CalibrationError, Sample, read_defects, read_good, synthetic_defects
from edge.calibration.features import FeatureCachingExpert
from edge.calibration.generated import generated_path, overridden_keys, recipe_includes, render_generated
from edge.calibration.kfold import score_defects, score_held_out
from edge.calibration.report import write_report
from edge.atomic import write_text_atomic
from edge.calibration.thresholds import Proposal, propose
from edge.config import load_recipe

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="Build the bank from good parts and propose thresholds (with a report that explains them).",
        description="Build the memory bank from good images, score them held-out (k-fold), score real or synthetic "
        "defects, and propose thresholds for a target false-reject rate. Thresholds go to <recipe>.generated.yaml "
        "(include it from the recipe); the recipe file itself is never rewritten.",
    )
    parser.add_argument("recipe", type=Path, help="Recipe YAML file.")
    parser.add_argument("--good", type=Path, required=True, metavar="DIR", help="Folder of good-part images.")
    parser.add_argument("--bank", type=Path, metavar="PATH", help="Where to write the bank (default: the recipe's bank.path).")
    parser.add_argument("--defects", type=Path, metavar="DIR",
                        help="Defect images, one sub-folder per defect type (DIR/scratch/*.png); also builds defect-type prototypes.")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="Make N synthetic defect images from the good ones (mask-guided generator).")
    parser.add_argument("--target-frr", type=float, default=0.01, metavar="F",
                        help="Target false-reject rate on good parts, 0 <= F < 1 (default 0.01 = 1 %%).")
    parser.add_argument("--margin", type=float, default=0.0, metavar="F",
                        help="Raise the image threshold by this fraction for safety (default 0).")
    parser.add_argument("--folds", type=int, default=5, metavar="K", help="Folds for held-out scoring (default 5; at most one per image).")
    parser.add_argument("--report", type=Path, metavar="DIR", help="Report folder (default: <recipe>.calibration/ beside the recipe).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if not 0.0 <= args.target_frr < 1.0:
        raise CalibrationError(f"--target-frr must be at least 0 and below 1 (got {args.target_frr:g})")
    if args.synthetic < 0:
        raise CalibrationError(f"--synthetic must be 0 or more (got {args.synthetic})")
    if args.folds < 2:
        raise CalibrationError(f"--folds must be at least 2 (got {args.folds})")
    if not 0.0 <= args.margin <= 1.0:
        raise CalibrationError(f"--margin must be between 0 and 1 (got {args.margin:g})")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from edge.bank import build_bank
    from edge.expert import load_expert

    _check_args(args)
    recipe = load_recipe(args.recipe)
    recipe_path = Path(args.recipe)
    bank_path = Path(args.bank) if args.bank else Path(recipe.bank.path)
    progress = not args.no_progress

    good = read_good(args.good)
    defects: list[Sample] = read_defects(args.defects) if args.defects else []
    roi = (recipe.roi.x, recipe.roi.y, recipe.roi.width, recipe.roi.height) if recipe.roi else None
    defects += synthetic_defects(good, args.synthetic, roi=roi)

    expert = load_expert(recipe.expert)
    try:
        cache = FeatureCachingExpert(expert)
        bank = build_bank(cache, [s.image for s in good], recipe, progress=progress, total=len(good))
        notes: list[str] = []
        proposal = None
        good_scored, defect_scored = [], []
        if len(good) >= 2:
            good_scored = score_held_out(expert, cache, good, recipe, args.folds, progress=_say if progress else None)
            defect_scored = score_defects(expert, bank, defects, recipe)
            proposal = propose(good_scored, defect_scored, recipe, args.target_frr, args.margin)
            if proposal.pixel_capped_by:
                notes.append(f"thresholds.pixel was capped at zone {proposal.pixel_capped_by}'s pixel {proposal.pixel:g} "
                             "(a zone may only be stricter); good parts may be rejected by that zone's regions")
        else:
            notes.append("only one good image: no held-out scores, so no thresholds are proposed (give at least 2, better 20+)")

        prototypes_rel = None
        prototypes = None
        if args.defects and any(s.defect_type not in (None, "defect") for s in defects):
            from edge.inspector import Inspector
            from edge.prototypes import build_prototypes

            prototypes = build_prototypes(Inspector(recipe, expert, bank), args.defects, progress=progress)
    finally:
        expert.close()

    # --- everything computed: write the outputs ---------------------------------------------
    bank.save(bank_path)
    _say(f"bank: {bank_path} ({bank.size} patches from {len(good)} good images)")
    if prototypes is not None:
        target = Path(recipe.assistant.prototypes) if recipe.assistant.prototypes else recipe_path.with_name(f"{recipe_path.stem}.prototypes.npz")
        prototypes.save(target)
        prototypes_rel = target.name if target.parent.resolve() == recipe_path.parent.resolve() else str(target.resolve())
        _say(f"defect-type prototypes: {target} ({', '.join(prototypes.types)})")
    if proposal is None:
        for note in notes:
            _say(f"note: {note}")
        return 0

    generated = generated_path(recipe_path)
    report_dir = args.report or recipe_path.with_name(f"{recipe_path.stem}.calibration")
    write_text_atomic(generated, render_generated(recipe_path, proposal, bank_path, prototypes_rel, report_dir / "calibration_report.md"))
    if not recipe_includes(recipe, generated):
        notes.append(f"{recipe_path.name} does not include {generated.name} yet: add `include: {generated.name}` "
                     "at the top of the recipe to use these thresholds")
    wins = overridden_keys(recipe_path, [("thresholds", "image_score"), ("thresholds", "pixel")])
    if wins:
        notes.append(f"{recipe_path.name} sets {', '.join(wins)} itself; those values override the generated ones "
                     "(remove them from the recipe to use the calibrated values)")
    report = write_report(report_dir, recipe_path, proposal, good_scored, defect_scored, bank_path, generated, notes)
    _print_summary(proposal, generated, report, notes)
    return 0


def _print_summary(proposal: Proposal, generated: Path, report: Path, notes: list[str]) -> None:
    print(f"thresholds.image_score: {proposal.image_score:.6f}")
    print(f"thresholds.pixel: {proposal.pixel:.6f}")
    print(f"held-out false-reject rate: {proposal.frr:.1%} ({len(proposal.false_rejects)}/{proposal.good_count}), "
          f"target {proposal.target_frr:.1%}")
    if proposal.miss_rate is not None:
        print(f"miss rate: {proposal.miss_rate:.1%} ({len(proposal.misses)}/{proposal.defect_count})")
    print(f"written: {generated}")
    print(f"report: {report}")
    for note in notes:
        print(f"note: {note}")

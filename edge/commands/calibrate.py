"""`iad-edge calibrate RECIPE --good DIR [--bank PATH] [--defects DIR] [--synthetic N] [--target-frr F]`.

Builds the memory bank from good parts, scores every good image held-out
(k-fold), scores real or synthetic defects, proposes `thresholds.image_score`
and `thresholds.pixel` for the target false-reject rate, and writes:

- the bank (``--bank`` or the recipe's ``bank.path``);
- ``<recipe>.generated.yaml`` with the thresholds (the recipe includes it; the
  technician's own file is never rewritten; a recipe that already names it in
  ``include:`` loads without it, so the first calibration works);
- ``<recipe>.calibration/calibration_report.md`` with PNG plots.

Every output path is checked before any image is read, all inputs are read
and checked before anything is written, and the outputs are staged and
renamed into place as one set (edge/outputs.py): a failure leaves nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from edge.aspect import aspect_warning, inspected_size
from edge.bank import build_bank
from edge.calibration.datasets import CalibrationError, Sample, read_defects, read_good, synthetic_defects
from edge.calibration.features import FeatureCachingExpert
from edge.calibration.generated import generated_path, names_include, overridden_keys, recipe_includes, render_generated
from edge.calibration.kfold import score_defects, score_held_out, scoring_recipe
from edge.calibration.report import write_report
from edge.calibration.thresholds import Proposal, propose
from edge.config import load_recipe
from edge.expert import load_expert
from edge.inspector import Inspector
from edge.outputs import Output, check_outputs, dir_output, file_output, output_set
from edge.prototypes import Prototypes, build_prototypes
from edge.words import count

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
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a non-empty --report folder that does not hold an earlier calibration report.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars or progress lines.")
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


def _outputs(args: argparse.Namespace, recipe_path: Path, bank_path: Path, prototypes_path: Path | None) -> list[Output]:
    """Every file and folder this run may write (checked before any image is read)."""
    outputs = [
        file_output(bank_path, "--bank" if args.bank else "bank.path"),
        file_output(generated_path(recipe_path), "generated thresholds"),
        dir_output(_report_dir(args, recipe_path), "--report", marker="calibration_report.md", overwrite=args.overwrite),
    ]
    if prototypes_path is not None:
        outputs.append(file_output(prototypes_path, "assistant.prototypes"))
    return outputs


def _report_dir(args: argparse.Namespace, recipe_path: Path) -> Path:
    return Path(args.report) if args.report else recipe_path.with_name(f"{recipe_path.stem}.calibration")


def _prototypes_path(args: argparse.Namespace, recipe: Any, recipe_path: Path) -> Path | None:
    if not args.defects:
        return None
    if recipe.assistant.prototypes:
        return Path(recipe.assistant.prototypes)
    return recipe_path.with_name(f"{recipe_path.stem}.prototypes.npz")


def _recipe_prototypes(recipe: Any) -> Any:
    """The defect-type prototypes the recipe already names (None when it names none or the file is not there yet)."""

    path = recipe.assistant.prototypes
    return Prototypes.load(path) if path and Path(path).is_file() else None


def _aspect_notes(good: list[Sample], recipe: Any) -> list[str]:
    sizes = sorted({inspected_size(recipe, (s.image.shape[1], s.image.shape[0])) for s in good})
    if not sizes:
        return []
    width, height = sizes[-1]
    warning = aspect_warning(width, height, recipe.tiling, "good images" if recipe.roi is None else "ROI")
    return [warning] if warning else []


def run(args: argparse.Namespace) -> int:

    _check_args(args)
    recipe_path = Path(args.recipe)
    generated = generated_path(recipe_path)
    recipe = load_recipe(recipe_path, being_created=(generated,))  # the recipe may include the file we are about to write
    bank_path = Path(args.bank) if args.bank else Path(recipe.bank.path)
    prototypes_path = _prototypes_path(args, recipe, recipe_path)
    outputs = _outputs(args, recipe_path, bank_path, prototypes_path)
    check_outputs(outputs)  # before any work: a bad --report costs one line, not a run
    progress = not args.no_progress

    good = read_good(args.good)
    notes: list[str] = []
    if args.synthetic and len(good) < 2:
        notes.append(f"--synthetic {args.synthetic} ignored: with one good image there are no held-out scores to "
                     "set thresholds from, so defects would not be used (give at least 2 good images, better 20+)")
    aspect = _aspect_notes(good, recipe)
    for line in aspect:
        _say(f"warning: {line}")
    notes += aspect
    defects: list[Sample] = read_defects(args.defects) if args.defects else []
    roi = (recipe.roi.x, recipe.roi.y, recipe.roi.width, recipe.roi.height) if recipe.roi else None
    if len(good) >= 2:
        defects += synthetic_defects(good, args.synthetic, roi=roi)
    say = _say if progress else None

    expert = load_expert(recipe.expert)
    try:
        cache = FeatureCachingExpert(expert)
        bank = build_bank(cache, [s.image for s in good], recipe, progress=progress, total=len(good))
        proposal = None
        good_scored, defect_scored = [], []
        if len(good) >= 2:
            good_scored = score_held_out(expert, cache, good, recipe, args.folds, progress=say)
            if defects and say:
                say(f"scoring {count(len(defects), 'defect image')} against the full bank ...")
            defect_scored = score_defects(expert, bank, defects, recipe, progress=say)
        else:
            notes.append("only one good image: no held-out scores, so no thresholds are proposed (give at least 2, better 20+)")

        prototypes = None
        if args.defects and any(s.defect_type not in (None, "defect") for s in defects):

            if say:
                say("building defect-type prototypes ...")
            prototypes = build_prototypes(Inspector(scoring_recipe(recipe), expert, bank), args.defects, progress=progress)
        if good_scored:
            # the verdicts are predicted with the prototypes the lane will load with these thresholds
            lane_prototypes = prototypes if prototypes is not None else _recipe_prototypes(recipe)
            proposal = propose(good_scored, defect_scored, recipe, args.target_frr, args.margin,
                               lane_prototypes if recipe.rules.always_reject else None)
            if proposal.pixel_capped_by:
                notes.append(f"thresholds.pixel was capped at zone {proposal.pixel_capped_by}'s pixel {proposal.pixel:g} "
                             "(a zone may only be stricter); good parts may be rejected by that zone's regions")
    finally:
        expert.close()

    # --- everything computed: write the outputs as one set -----------------------------------
    report_dir = _report_dir(args, recipe_path)
    report = report_dir / "calibration_report.md"
    written: list[str] = []
    if say and proposal is not None:
        say("writing bank, thresholds and report (plots) ...")
    with output_set(outputs) as staged:
        bank.save(staged.stage(outputs[0]))
        written.append(f"bank: {bank_path} ({count(bank.size, 'patch')} from {count(len(good), 'good image')})")
        prototypes_rel = None
        if prototypes is not None and prototypes_path is not None:
            prototypes.save(staged.stage(outputs[3]))
            prototypes_rel = (prototypes_path.name if prototypes_path.parent.resolve() == recipe_path.parent.resolve()
                              else str(prototypes_path.resolve()))
            written.append(f"defect-type prototypes: {prototypes_path} ({', '.join(prototypes.types)})")
        if proposal is not None:
            staged_generated = staged.stage(outputs[1])
            staged_generated.write_text(render_generated(recipe_path, proposal, bank_path, prototypes_rel, report),
                                        encoding="utf-8")
            if not (recipe_includes(recipe, generated) or names_include(recipe_path, generated)):
                notes.append(f"{recipe_path.name} does not include {generated.name} yet: add `include: {generated.name}` "
                             "at the top of the recipe to use these thresholds")
            wins = overridden_keys(recipe_path, [("thresholds", "image_score"), ("thresholds", "pixel")])
            if wins:
                notes.append(f"{recipe_path.name} sets {', '.join(wins)} itself; those values override the generated "
                             "ones (remove them from the recipe to use the calibrated values)")
            write_report(staged.stage(outputs[2]), recipe_path, proposal, good_scored, defect_scored, bank_path,
                         generated, notes)
    for line in written:
        _say(line)
    if proposal is None:
        for note in notes:
            _say(f"note: {note}")
        return 0
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

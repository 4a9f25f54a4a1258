"""`iad-edge inspect RECIPE IMAGE_OR_DIR… --out DIR [--bank PATH]`: offline inspection of image files.

Writes ``DIR/<stem>.json`` (score, verdict, reason, regions, timings) and
``DIR/<stem>.png`` (heat map + region boxes) per image, and ``DIR/summary.json``.
``--out`` is checked before any work, every input is read and validated
before anything is written, and the folder is staged and renamed into place
as a whole, so a bad file or a crash leaves no partial output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge.atomic import write_text_atomic
from edge.config import load_recipe
from edge.errors import IadError
from edge.imageio import read_image, write_image_atomic
from edge.inspector import Inspector
from edge.outputs import check_outputs, dir_output, output_set
from edge.overlay import render_overlay
from edge.sources.folder import list_images
from edge.words import count

SUMMARY = "summary.json"  # also marks the folder as inspect's own output (replaced on the next run)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="Inspect image files and write JSON results and overlays.",
        description="Inspect image files (or folders of images) offline with the recipe's expert, bank and thresholds. "
        "Writes <stem>.json (score, verdict, reason, regions, timings) and <stem>.png (labelled heat map with "
        "region boxes) per image, plus summary.json, into --out. Every input is read and --out is checked before "
        "any work; the folder is written as a whole or not at all.",
    )
    p.add_argument("recipe", type=Path, help="Recipe YAML (calibration/*.yaml).")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE_OR_DIR", help="Image files or folders of images.")
    p.add_argument("--out", type=Path, required=True,
                   help="Output folder for <stem>.json and <stem>.png (absent, empty, or an earlier inspect output, "
                   "which is replaced; anything else needs --overwrite).")
    p.add_argument("--overwrite", action="store_true", help="Replace a non-empty --out folder that is not an earlier inspect output.")
    p.add_argument("--bank", type=Path, default=None, help="Memory bank (.npz); default: the recipe's bank.path.")
    p.set_defaults(func=run)


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Expand folders, keep files; refuse missing paths and duplicate stems (outputs are named by stem)."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise IadError(f"{item}: folder holds no images")
            paths.extend(found)
        elif item.exists():
            paths.append(item)
        else:
            raise IadError(f"{item}: no such file or folder")
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise IadError(f"{path} and {stems[path.stem]} would both write {path.stem}.json; rename one")
        stems[path.stem] = path
    return paths


def run(args: argparse.Namespace) -> int:

    out = dir_output(args.out, "--out", marker=SUMMARY, overwrite=args.overwrite)
    check_outputs([out])  # before any work: a bad --out costs one line, not a run
    recipe = load_recipe(args.recipe)
    paths = collect_inputs(args.inputs)
    for path in paths:  # every input decoded once before any work, then read again one at a time (memory: one frame)
        read_image(path)
    inspector = Inspector.from_recipe(recipe, bank_path=args.bank)
    for warning in inspector.bank_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    inspector.progress = _tile_progress
    counts = {"OK": 0, "NG": 0}
    rows = []
    started = time.perf_counter()
    with output_set([out]) as staged:
        folder = staged.stage(out)
        for number, path in enumerate(paths, start=1):
            image = read_image(path)
            result = inspector.inspect(image)
            record = {"image": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]), **result.to_json()}
            write_text_atomic(folder / f"{path.stem}.json", json.dumps(record, indent=2) + "\n")
            overlay = render_overlay(image, result.anomaly_map, result.regions, recipe.thresholds.pixel, result.verdict,
                                     result.score, recipe.thresholds.image_score)
            write_image_atomic(folder / f"{path.stem}.png", overlay)
            counts[result.verdict] = counts.get(result.verdict, 0) + 1
            rows.append({"image": str(path), "verdict": result.verdict, "score": round(float(result.score), 6),
                         "regions": len(result.regions), "reason": result.reason})
            prefix = f"[{number}/{len(paths)}] " if len(paths) > 1 else ""
            print(f"{prefix}{path.name}: {result.verdict} score={result.score:.4f} regions={len(result.regions)} "
                  f"({result.timings['total']:.1f} ms) {result.reason}", flush=True)
        summary = {"recipe": str(args.recipe), "images": len(paths), **{k.lower(): v for k, v in counts.items()},
                   "image_score_threshold": recipe.thresholds.image_score, "pixel_threshold": recipe.thresholds.pixel,
                   "results": rows}
        write_text_atomic(folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
    seconds = time.perf_counter() - started
    print(f"{count(len(paths), 'image')}: {counts.get('NG', 0)} NG, {counts.get('OK', 0)} OK "
          f"in {seconds:.1f} s; results and overlays in {args.out}/ ({SUMMARY})")
    return 0


def _tile_progress(done: int, total: int) -> None:
    """One line per chunk of tiles for a frame cut into many (a large frame takes seconds)."""
    print(f"  tiles {done}/{total}", file=sys.stderr, flush=True)

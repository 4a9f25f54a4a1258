"""`iad-edge inspect RECIPE IMAGE_OR_DIR… --out DIR [--bank PATH]`: offline inspection of image files.

Writes ``DIR/<stem>.json`` (score, verdict, reason, regions, timings) and
``DIR/<stem>.png`` (heat map + region boxes) per image. Every input is read
and validated before anything is written, so a bad file leaves no partial output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.atomic import write_text_atomic
from edge.config import load_recipe
from edge.errors import IadError
from edge.imageio import read_image, write_image_atomic
from edge.overlay import render_overlay
from edge.sources.folder import list_images


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="Inspect image files and write JSON results and overlays.")
    p.add_argument("recipe", type=Path, help="Recipe YAML (calibration/*.yaml).")
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE_OR_DIR", help="Image files or folders of images.")
    p.add_argument("--out", type=Path, required=True, help="Output folder for <stem>.json and <stem>.png.")
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
    from edge.inspector import Inspector  # imported here so `--help` stays instant

    recipe = load_recipe(args.recipe)
    paths = collect_inputs(args.inputs)
    images = [(path, read_image(path)) for path in paths]  # all validated before any output
    inspector = Inspector.from_recipe(recipe, bank_path=args.bank)
    args.out.mkdir(parents=True, exist_ok=True)
    for path, image in images:
        result = inspector.inspect(image)
        record = {"image": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]), **result.to_json()}
        write_text_atomic(args.out / f"{path.stem}.json", json.dumps(record, indent=2) + "\n")
        overlay = render_overlay(image, result.anomaly_map, result.regions, recipe.thresholds.pixel, result.verdict, result.score)
        write_image_atomic(args.out / f"{path.stem}.png", overlay)
        print(f"{path.name}: {result.verdict} score={result.score:.4f} regions={len(result.regions)} "
              f"({result.timings['total']:.1f} ms) {result.reason}")
    return 0

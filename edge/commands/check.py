"""`iad-edge check RECIPE`: validate a recipe without starting anything.

Exit 0 and a summary when the recipe is usable; exit 1 and one
``file:line:col: field: message`` line per problem otherwise. With
``--against`` it also shows what would change compared with a running
appliance (its retained MQTT status) or another recipe file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.aspect import aspect_warning, inspected_size
from edge.bank import Bank
from edge.bank_fit import compare, describe, frame_limit
from edge.config import Recipe, RecipeError, load_recipe
from edge.config.diff import diff_effective
from edge.errors import IadError
from edge.files import MANIFEST_NAME
from edge.mqtt.remote import applied_recipe, parse_host_port, read_status
from edge.mqtt.topics import Topics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="Validate a recipe (exit 0/1) and optionally show what would change on a running appliance.",
        description="Validate a recipe without starting anything: YAML syntax, keys, types, ranges, cross-field rules "
        "and the files it names. Prints 'OK' and a summary, or one 'file:line:col: field: message' line per problem.",
    )
    parser.add_argument("recipe", type=Path, help="Recipe YAML file.")
    parser.add_argument(
        "--against", metavar="HOST:PORT|RECIPE",
        help="Compare with the recipe a running appliance applied (read from its retained MQTT status on HOST:PORT) "
        "or with another recipe file, and list the effective values that would change.",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="Seconds to wait for the appliance's status (default 5).")
    parser.add_argument("--no-files", action="store_true", help="Do not require the files the recipe names to exist.")
    parser.set_defaults(func=run)


def summary(recipe: Recipe) -> list[str]:
    """A few lines that tell the technician what this recipe will do."""
    source = recipe.source
    size = recipe.frame_size()
    lines = [
        f"line {recipe.line} / station {recipe.station}, topics under {recipe.topic_root}/",
        f"source: {source.type}" + (f" {size[0]}x{size[1]}" if size else ""),
        f"expert: {recipe.expert.backend} {getattr(recipe.expert, 'model', None) or getattr(recipe.expert, 'engine', '')}",
        f"tiling: {recipe.tiling.mode} at {recipe.tiling.resolution} px; bank: {recipe.bank.path}",
        f"thresholds: image_score {recipe.thresholds.image_score:g}, pixel {recipe.thresholds.pixel:g}",
        f"rules: min_area_px {recipe.rules.min_area_px}"
        + (f", min_area_mm2 {recipe.rules.min_area_mm2:g}" if recipe.rules.min_area_mm2 is not None else "")
        + (f", zones {', '.join(z.name for z in recipe.rules.zones)}" if recipe.rules.zones else "")
        + (f", always reject {', '.join(recipe.rules.always_reject)}" if recipe.rules.always_reject else ""),
        f"decision: window {recipe.decision.window_ms} ms, fail-safe {recipe.decision.fail_safe}",
    ]
    if recipe.included_paths:
        lines.append("includes: " + ", ".join(str(p) for p in recipe.included_paths))
    lines.append(f"sha256: {recipe.sha256}")
    return lines


def _manifest_sha256(recipe: Recipe) -> str:
    """sha256 of the expert model as its manifest.json records it ('' when unknown); no model is loaded."""
    model = getattr(recipe.expert, "model", None) or getattr(recipe.expert, "engine", None)
    try:
        files = json.loads(Path(model).with_name(MANIFEST_NAME).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, TypeError, AttributeError):
        return ""
    for entry in files.values():
        if isinstance(entry, dict) and "sha256" in entry:
            return str(entry["sha256"])
    return ""


def bank_report(recipe: Recipe) -> tuple[list[str], list[str], list[str]]:
    """(summary lines, warnings, errors) about the bank: what it was built for and whether it fits this recipe."""

    path = Path(recipe.bank.path)
    if not path.is_file():
        return [], [f"bank.path {path} does not exist yet: run `iad-edge calibrate {recipe.source_path} --good DIR`"], []
    try:
        bank = Bank.load(path)
    except IadError as exc:
        return [], [], [str(exc)]
    fit = compare(bank.meta, recipe, _manifest_sha256(recipe))
    lines = [f"bank built for: {describe(bank.meta)}"]
    limit, why = frame_limit(recipe, bank.meta)
    lines.append(f"frame guard: frames above {limit:.1f} MP are refused ({why.split(';')[0]})")
    return lines, fit.warnings, [f"{path}: {e}" for e in fit.errors]


def _aspect(recipe: Recipe) -> list[str]:
    size = inspected_size(recipe)
    if size is None and Path(recipe.bank.path).is_file():

        try:
            hi = Bank.load(recipe.bank.path).meta.get("frame_max")
        except IadError:
            hi = None
        size = tuple(hi) if hi else None
    warning = aspect_warning(size[0], size[1], recipe.tiling, "ROI" if recipe.roi else "frames") if size else None
    return [warning] if warning else []


def warnings(recipe: Recipe) -> list[str]:
    """Things that do not stop the recipe from loading but will matter at run time."""
    out = [f"warning: {line}" for line in _aspect(recipe)]
    if recipe.source.type == "folder" and getattr(recipe.source, "rate_hz", None) is None:
        out.append("note: source.type folder replays files, it is not a camera: without source.rate_hz frames are "
                   "pulled as fast as the lane takes them and the decision window starts when a file is read; set "
                   "source.rate_hz to pace them like the line's trigger")
    source = recipe.source_path
    if source is not None:
        generated = source.with_name(f"{source.stem}.generated.yaml")
        if generated.is_file() and generated.resolve() not in recipe.included_paths:
            out.append(f"warning: {generated.name} (written by `iad-edge calibrate`) exists but is not included: "
                       f"add `include: {generated.name}` to use its thresholds")
    if recipe.mqtt.tls is not None and recipe.mqtt.port == 1883:
        out.append("warning: mqtt.tls is set but mqtt.port is 1883 (the plain-text port by convention; TLS brokers usually listen on 8883)")
    return out


def _against(recipe: Recipe, target: str, timeout: float) -> int:
    candidate = Path(target)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        other = load_recipe(candidate)
        before_sha, before = other.sha256, other.effective()
        print(f"against {candidate} (sha256 {before_sha[:12]})")
    else:
        host, port = parse_host_port(target)
        status = read_status(host, port, Topics(recipe.topic_root).status, timeout)
        before_sha, before = applied_recipe(status)
        print(f"against the appliance at {host}:{port} ({recipe.topic_root}, state {status.get('state', '?')}, "
              f"recipe sha256 {str(before_sha)[:12] if before_sha else 'unknown'})")
        if before is None:
            same = "the same" if before_sha == recipe.sha256 else "different"
            print(f"the appliance does not publish its recipe values; the recipe hash is {same}")
            return 0
    changes = diff_effective(before, recipe.effective())
    if not changes:
        print("no effective value would change")
    else:
        print(f"{len(changes)} effective value(s) would change:")
        for change in changes:
            print(f"  {change}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        recipe = load_recipe(args.recipe, check_files=not args.no_files)
    except RecipeError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {args.recipe}", file=sys.stderr)
        return 1
    bank_lines, bank_warnings, bank_errors = bank_report(recipe) if not args.no_files else ([], [], [])
    if bank_errors:
        for problem in bank_errors:
            print(problem, file=sys.stderr)
        print(f"{len(bank_errors)} problem(s) with the bank of {args.recipe}: the appliance would refuse it", file=sys.stderr)
        return 1
    print(f"OK {args.recipe}")
    for line in summary(recipe) + bank_lines:
        print(f"  {line}")
    for line in warnings(recipe) + [f"warning: {w}" for w in bank_warnings]:
        print(line)
    if args.against:
        return _against(recipe, args.against, args.timeout)
    return 0

"""Read a recipe YAML file into a validated :class:`Recipe`.

Errors are reported as ``file:line:col: field.path: message (got X)`` so that a
technician can go straight to the line. Validation happens fully in memory:
nothing is applied until the whole file is valid.

``include:`` merges other recipe files UNDER the recipe: an included file gives
defaults, a key written in the recipe itself wins (sections merge key by key,
lists and values are replaced whole). `iad-edge calibrate` writes its proposed
thresholds to ``<name>.generated.yaml`` and never touches the technician's
file; the technician's explicit values always have the last word.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.config.files import missing_files, model_mismatches
from edge.config.messages import Problem, display_path, problem_from_error
from edge.config.recipe import Recipe
from edge.config.yamlmarks import KeyPath, Mark, YamlProblem, load_with_marks
from edge.errors import IadError
from edge.security import ENV_ROOTS, PathNotAllowedError, allowed_roots, confinement_enabled, is_within, recipe_paths


class RecipeError(IadError, ValueError):
    """A recipe that cannot be used, with one line per problem (``file:line:col: field: message``)."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        super().__init__("\n".join(problems))


def load_recipe(path: str | Path, *, check_files: bool = False, being_created: tuple[Path, ...] = ()) -> Recipe:
    """Load and validate a recipe; relative paths inside resolve against its folder.

    ``check_files=True`` also requires the input files it names (model, GenTL
    producer, TLS files, password file, ...) to exist; `check`, `calibrate` and
    live reload use it. It is off by default because the demo loads its recipe
    before it builds the tiny model the recipe names.

    ``being_created`` names included files the caller is about to write
    (`calibrate` and its ``<name>.generated.yaml``): when missing they are
    skipped instead of being an error, so the recipe that includes the file can
    be calibrated for the first time.
    """
    path = Path(path)
    return parse_recipe(_read_text(path, path, None), path, check_files=check_files, being_created=being_created)


def _read_text(path: Path, recipe_path: Path, mark: Mark | None) -> str:
    where = f"{mark}: include: " if mark else f"{path}: "
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = ""
        if mark is not None and path.name == f"{recipe_path.stem}.generated.yaml":
            hint = f" (it is written by `iad-edge calibrate {recipe_path} --good DIR`, which runs without it)"
        raise RecipeError(recipe_path, [f"{where}recipe file not found: {path}{hint}"]) from None
    except IsADirectoryError:
        raise RecipeError(recipe_path, [f"{where}is a folder, not a recipe file: {path}"]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(recipe_path, [f"{where}not a UTF-8 text file ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise RecipeError(recipe_path, [f"{where}cannot read recipe ({exc.strerror})"]) from None


def _parse_mapping(text: str, path: Path, recipe_path: Path) -> tuple[dict[str, Any], dict[KeyPath, Mark]]:
    try:
        data, marks = load_with_marks(text, path)
    except YamlProblem as exc:
        raise RecipeError(recipe_path, [str(exc)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(recipe_path, [f"{path}:1:1: a recipe must be a mapping of keys (version, source, expert, ...)"])
    return data, marks


def merge_under(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep merge where ``top`` wins: sections merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_under(out[key], value)
        else:
            out[key] = value
    return out


def _mark_for(problem: Problem, marks: dict[KeyPath, Mark]) -> Mark:
    """The position of the problem's key; a missing key points at its parent section."""
    path = problem.path if problem.at_key else problem.path[:-1]
    while path and path not in marks:
        path = path[:-1]
    return marks.get(path) or marks[()]


def _includes(data: dict[str, Any], marks: dict[KeyPath, Mark], path: Path) -> list[tuple[Path, Mark]]:
    raw = data.get("include")
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise RecipeError(path, [f"{marks[('include',)]}: include: must be a file name or a list of file names"])
    out = []
    for number, item in enumerate(items):
        mark = marks.get(("include", number), marks[("include",)])
        target = Path(item).expanduser()
        out.append(((path.parent / target) if not target.is_absolute() else target, mark))
    return out


def parse_recipe(text: str, path: str | Path, *, check_files: bool = False,
                 being_created: tuple[Path, ...] = ()) -> Recipe:
    """Validate recipe text as if read from ``path`` (used for live reload and `check`).

    Included files are read from disk, relative to ``path``'s folder. Raises
    :class:`RecipeError` with every problem found (sorted by file and line).
    """
    path = Path(path)
    data, marks = _parse_mapping(text, path, path)
    roots = _confinement_roots(path)
    digest = hashlib.sha256(text.encode())
    included: list[Path] = []
    merged: dict[str, Any] = {}
    merged_marks: dict[KeyPath, Mark] = {}
    skip = {Path(p).resolve() for p in being_created}
    for inc_path, mark in _includes(data, marks, path):
        if roots is not None and not is_within(inc_path, roots):  # refused before a byte of it is read
            raise RecipeError(path, [f"{mark}: include: {inc_path} resolves to {os.path.realpath(inc_path)}, "
                                     f"{_outside(roots)}"])
        if not inc_path.exists() and inc_path.resolve() in skip:
            continue  # the caller is about to create it (calibrate)
        inc_text = _read_text(inc_path, path, mark)
        inc_data, inc_marks = _parse_mapping(inc_text, inc_path, path)
        if "include" in inc_data:
            raise RecipeError(path, [f"{inc_marks[('include',)]}: include: an included file cannot include others"])
        merged = merge_under(merged, inc_data)
        merged_marks.update(inc_marks)
        included.append(inc_path.resolve())
        digest.update(b"\0" + inc_text.encode())
    data = merge_under(merged, data)
    merged_marks.update(marks)
    marks = merged_marks
    marks[()] = Mark(path, 1, 1)

    try:
        recipe = Recipe.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        problems = [problem_from_error(Recipe, dict(err), data) for err in exc.errors()]
        raise RecipeError(path, _format(problems, marks)) from None

    if roots is not None:
        outside = [Problem(_key_path(field), f"{value} resolves to {os.path.realpath(value)}, {_outside(roots)}")
                   for field, value in recipe_paths(recipe) if not is_within(value, roots)]
        if outside:
            raise RecipeError(path, _format(outside, marks))

    if check_files:

        problems = [Problem(key_path, message) for key_path, message in missing_files(recipe) + model_mismatches(recipe)]
        if problems:
            raise RecipeError(path, _format(problems, marks))

    recipe._source_path = path.resolve()
    recipe._source_text = text
    recipe._source_hash = digest.hexdigest()
    recipe._included = tuple(included)
    return recipe


def _confinement_roots(path: Path) -> list[Path] | None:
    """The allowed roots when confinement is on (``$IAD_ALLOWED_ROOTS`` set, as in the units), else None.

    Checked here, in the one loader, so every recipe the appliance reads is
    confined the same way: at start, on live reload, in every command, and the
    ``include:`` files before they are read (symlinks and ``..`` resolved).
    """
    if not confinement_enabled():
        return None
    try:
        return allowed_roots(path)
    except PathNotAllowedError as exc:
        raise RecipeError(path, [f"{path}: {exc}"]) from None


def _outside(roots: list[Path]) -> str:
    return (f"outside the allowed roots ({', '.join(str(r) for r in roots)}): move it under one of them "
            f"or add its folder to ${ENV_ROOTS}")


def _key_path(dotted: str) -> KeyPath:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def _format(problems: list[Problem], marks: dict[KeyPath, Mark]) -> list[str]:
    """``file:line:col: field.path: message`` lines, sorted by position, duplicates dropped."""
    lines: list[tuple[tuple[str, int, int], str]] = []
    seen = set()
    for problem in problems:
        mark = _mark_for(problem, marks)
        line = f"{mark}: {display_path(problem.path)}: {problem.message}"
        if line not in seen:
            seen.add(line)
            lines.append(((str(mark.file), mark.line, mark.column), line))
    return [line for _, line in sorted(lines, key=lambda item: item[0])]

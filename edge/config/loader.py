"""Read a recipe YAML file into a validated :class:`Recipe`.

Errors are reported as ``file:line:col: field.path: message (got X)`` so that a
technician can go straight to the line. Validation happens fully in memory:
nothing is applied until the whole file is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import ValidationError

from edge.config.recipe import Recipe


class RecipeError(ValueError):
    """A recipe that cannot be used, with one line per problem."""

    def __init__(self, path: Union[str, Path], problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        super().__init__("\n".join(problems))


def load_recipe(path: Union[str, Path]) -> Recipe:
    """Load and validate a recipe; relative paths inside resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(path, [f"{path}: recipe file not found"]) from None
    except OSError as exc:
        raise RecipeError(path, [f"{path}: cannot read recipe ({exc.strerror})"]) from None
    return parse_recipe(text, path)


def parse_recipe(text: str, path: Union[str, Path]) -> Recipe:
    """Validate recipe text as if read from ``path`` (used for live reload and `check`)."""
    path = Path(path)
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(path, [f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise RecipeError(path, [f"{path}:1:1: a recipe must be a mapping of keys (version, source, expert, ...)"])
    try:
        recipe = Recipe.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
            problems.append(f"{path}: {loc}: {err['msg']}{got}")
        raise RecipeError(path, problems) from None
    recipe._source_path = path.resolve()
    recipe._source_text = text
    return recipe

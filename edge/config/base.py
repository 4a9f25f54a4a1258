"""Shared building blocks for the recipe models.

Every model forbids unknown keys (a typo must never be silently ignored on a
production line) and every field carries a description, which feeds the JSON
Schema that editors use for completion.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError


class StrictModel(BaseModel):
    """Base for all recipe sections: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _resolve_against_recipe(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the folder of the recipe file.

    One rule for every path in a recipe (documented in docs/recipes.md): relative
    paths are relative to the folder that holds the YAML file, never to the
    current working directory, so a recipe behaves the same from systemd,
    from a shell in the repo root, or from a test's tmp dir.
    """
    base = (info.context or {}).get("base_dir")
    value = Path(value).expanduser()
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return Path(os.path.normpath(value))


RecipePath = Annotated[Path, AfterValidator(_resolve_against_recipe)]
"""A filesystem path in a recipe; relative paths resolve against the recipe's folder."""


def rule_error(field: str, message: str) -> PydanticCustomError:
    """A cross-field error that points at ``field`` (dotted, relative to the model raising it).

    A plain ``ValueError`` in a model validator is reported at the model's own
    location; the loader reads ``ctx['field']`` to send the technician to the
    line of the field that needs the fix instead.
    """
    return PydanticCustomError("recipe_rule", "{message}", {"message": message, "field": field})

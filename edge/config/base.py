"""Shared building blocks for the recipe models.

Every model forbids unknown keys (a typo must never be silently ignored on a
production line) and every field carries a description, which feeds the JSON
Schema that editors use for completion.

Types are strict, so the appliance accepts exactly what the JSON Schema accepts
(an editor showing green must mean `iad-edge check` passes, and the reverse):
``port: "1883"``, ``pixel: "0.12"`` or ``enabled: "yes"`` are refused, not
coerced. The one JSON rule pydantic's strict mode lacks is applied by hand: a
whole number written as ``1883.0`` is an integer for JSON Schema, so it is one
here too. Paths stay lax (text in YAML becomes a ``Path``).
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError


def _takes_int(annotation: Any) -> bool:
    """int, Optional[int], list[int] (and Optional of it): fields where JSON's 1883.0 means 1883."""
    if annotation is int:
        return True
    return any(_takes_int(arg) for arg in typing.get_args(annotation) if arg is not type(None)) and not any(
        arg in (float, str, bool) for arg in typing.get_args(annotation))


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


class StrictModel(BaseModel):
    """Base for all recipe sections: unknown keys are errors, types are strict, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_floats_are_integers(cls, data: Any) -> Any:
        """``1883.0`` is an integer in JSON Schema; accept it for integer fields like the schema does."""
        if isinstance(data, dict):
            changed = {name: _whole(data[name]) for name, field in cls.model_fields.items()
                       if name in data and _takes_int(field.annotation)}
            if changed:
                data = {**data, **changed}
        return data


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


RecipePath = Annotated[Path, Strict(False), AfterValidator(_resolve_against_recipe)]
"""A filesystem path in a recipe; relative paths resolve against the recipe's folder."""


def rule_error(field: str, message: str) -> PydanticCustomError:
    """A cross-field error that points at ``field`` (dotted, relative to the model raising it).

    A plain ``ValueError`` in a model validator is reported at the model's own
    location; the loader reads ``ctx['field']`` to send the technician to the
    line of the field that needs the fix instead.
    """
    return PydanticCustomError("recipe_rule", "{message}", {"message": message, "field": field})

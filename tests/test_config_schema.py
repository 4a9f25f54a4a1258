"""The JSON Schema is generated from the models, checked in, and documents every field."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

from pydantic import BaseModel

from edge.config.recipe import Recipe
from edge.config.schema import REPO_SCHEMA_PATH, recipe_json_schema_text

REPO = Path(__file__).resolve().parents[1]


def test_config_schema_file_is_current():
    assert REPO_SCHEMA_PATH == REPO / "calibration" / "recipe.schema.json"
    assert REPO_SCHEMA_PATH.read_text(encoding="utf-8") == recipe_json_schema_text(), (
        "calibration/recipe.schema.json is stale: run `iad-edge schema --write`"
    )


def _models(model: type[BaseModel], seen: set) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                _models(ann, seen)
            stack.extend(typing.get_args(ann))


def test_config_every_field_has_a_description_and_models_forbid_extra_keys():
    seen: set = set()
    _models(Recipe, seen)
    assert len(seen) > 10
    for model in seen:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_config_schema_command_prints_the_schema():
    out = subprocess.run([sys.executable, "-m", "edge.cli", "schema"], capture_output=True, text=True, cwd=REPO, check=True)
    schema = json.loads(out.stdout)
    assert schema["additionalProperties"] is False
    assert "thresholds" in schema["properties"]
    assert schema["$defs"]["ThresholdsConfig"]["properties"]["image_score"]["maximum"] == 2.0


def test_config_example_recipes_reference_the_schema_and_are_valid():
    for name in ("demo.yaml", "example-line.yaml"):
        path = REPO / "calibration" / name
        if not path.exists():
            continue
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=recipe.schema.json", name
        from edge.config import load_recipe

        load_recipe(path)  # valid (files are not required to exist)


def test_config_docs_key_reference_is_current():
    from edge.config.schema import docs_with_reference

    text = (REPO / "docs" / "recipes.md").read_text(encoding="utf-8")
    assert docs_with_reference(text) == text, "docs/recipes.md key reference is stale: run `iad-edge schema --write`"

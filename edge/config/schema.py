"""JSON Schema of the recipe, for editors (VS Code YAML extension) and docs.

Generated from the pydantic models so it can never drift from what the loader
accepts; `calibration/recipe.schema.json` is a checked-in copy (a test fails
when it is stale: regenerate with `iad-edge schema --write`).
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.config.recipe import Recipe

SCHEMA_ID = "https://github.com/iad-edge/iad-edge/calibration/recipe.schema.json"
REPO_SCHEMA_PATH = Path(__file__).resolve().parents[2] / "calibration" / "recipe.schema.json"


def recipe_json_schema() -> dict:
    """The recipe's JSON Schema (draft 2020-12) as a dict."""
    schema = Recipe.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def recipe_json_schema_text() -> str:
    """The schema as the exact text of the checked-in file (stable key order, trailing newline)."""
    return json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False) + "\n"

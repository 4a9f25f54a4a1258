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


def _default_text(field) -> str:  # noqa: ANN001 - pydantic FieldInfo
    from pathlib import PurePath

    from pydantic import BaseModel

    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def reference_markdown() -> str:
    """Markdown tables of every recipe section and key (default, meaning), generated from the models.

    docs/recipes.md embeds this between markers; a test keeps it current
    (`iad-edge schema --markdown` prints it).
    """
    from edge.config.messages import _models_in, _tag

    seen: set = set()
    out: list[str] = []

    def walk(model, path: str, variant: str = "") -> None:  # noqa: ANN001
        if model in seen:
            return
        seen.add(model)
        title = f"{path or '(top level)'}{variant}"
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out.extend([f"#### `{title}`", "", doc, "", "| key | default | meaning |", "| --- | --- | --- |"])
        for name, field in model.model_fields.items():
            meaning = (field.description or "").replace("|", "\\|")
            out.append(f"| `{name}` | {_default_text(field).replace('|', '/')} | {meaning} |")
        out.append("")
        for name, field in model.model_fields.items():
            for child in _models_in(field.annotation):
                tag = _tag(child)
                key = "type" if "type" in child.model_fields and tag else "backend"
                walk(child, f"{path}.{name}" if path else name, f" ({key}: {tag})" if tag else variant if path else "")

    walk(Recipe, "")
    return "\n".join(out).rstrip() + "\n"


REPO_DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"
DOCS_BEGIN = "<!-- BEGIN GENERATED KEY REFERENCE (iad-edge schema --markdown) -->\n\n"
DOCS_END = "\n<!-- END GENERATED KEY REFERENCE -->"


def docs_with_reference(text: str) -> str:
    """``text`` (docs/recipes.md) with the generated key reference between its markers replaced."""
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise ValueError("docs/recipes.md lacks the generated key reference markers")
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    return head + DOCS_BEGIN + reference_markdown() + DOCS_END + tail

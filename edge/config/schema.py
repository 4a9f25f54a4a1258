"""JSON Schema of the recipe, for editors (VS Code YAML extension) and docs.

Generated from the pydantic models so it can never drift from what the loader
accepts; `calibration/recipe.schema.json` is a checked-in copy (a test fails
when it is stale: regenerate with `iad-edge schema --write`).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edge.config.messages import _models_in, _tag
from edge.config.recipe import Recipe

SCHEMA_ID = "https://github.com/iad-edge/iad-edge/calibration/recipe.schema.json"
REPO_SCHEMA_PATH = Path(__file__).resolve().parents[2] / "calibration" / "recipe.schema.json"


# What the models' validators enforce, said in JSON Schema, so that an editor's green means the
# appliance accepts the file (tests/test_config_schema_agreement.py checks both directions with
# the independent `jsonschema` validator). Merged into the generated $defs / root.
_POSITIVE_POINT = {"type": "array", "prefixItems": [{"type": "number", "minimum": 0}, {"type": "number", "minimum": 0}],
                   "minItems": 2, "maxItems": 2}
_TEXT = {"type": "string"}
_DEF_RULES: dict[str, dict[str, Any]] = {
    "TilingConfig": {"properties": {"resolution": {"multipleOf": 14}}},
    "OnnxRuntimeExpertConfig": {"properties": {"providers": {"minItems": 1}}},
    "ZoneConfig": {"properties": {"polygon": {"minItems": 3, "items": _POSITIVE_POINT}},
                   "if": {"properties": {"ignore": {"const": True}}, "required": ["ignore"]},
                   "then": {"properties": {"pixel": {"type": "null"}, "min_area_px": {"type": "null"}, "min_area_mm2": {"type": "null"}}}},
    "MqttConfig": {"if": {"properties": {"password_file": _TEXT}, "required": ["password_file"]},
                   "then": {"properties": {"username": {"type": "string", "minLength": 1}}, "required": ["username"]}},
    "MqttTlsConfig": {"allOf": [
        {"if": {"properties": {"cert_file": _TEXT}, "required": ["cert_file"]},
         "then": {"properties": {"key_file": _TEXT}, "required": ["key_file"]}},
        {"if": {"properties": {"key_file": _TEXT}, "required": ["key_file"]},
         "then": {"properties": {"cert_file": _TEXT}, "required": ["cert_file"]}},
    ]},
}
_NUMBER = {"type": "number"}
_ROOT_RULES = {"allOf": [
    {  # rules.min_area_mm2 (or a zone's) needs pixel_pitch_mm
        "if": {"properties": {"rules": {"anyOf": [
            {"properties": {"min_area_mm2": _NUMBER}, "required": ["min_area_mm2"]},
            {"properties": {"zones": {"contains": {"properties": {"min_area_mm2": _NUMBER}, "required": ["min_area_mm2"]}}},
             "required": ["zones"]},
        ]}}, "required": ["rules"]},
        "then": {"properties": {"pixel_pitch_mm": _NUMBER}, "required": ["pixel_pitch_mm"]},
    },
    {  # rules.always_reject needs assistant.prototypes
        "if": {"properties": {"rules": {"properties": {"always_reject": {"minItems": 1}}, "required": ["always_reject"]}},
               "required": ["rules"]},
        "then": {"properties": {"assistant": {"properties": {"prototypes": _TEXT}, "required": ["prototypes"]}},
                 "required": ["assistant"]},
    },
]}


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _require_discriminators(node: object, defs: dict[str, Any]) -> None:
    """A union section's selector (source.type, expert.backend) is required, as the appliance requires it.

    The models give the selector a default (handy in code), which would make it
    optional in the schema although a recipe without it is refused.
    """
    if isinstance(node, dict):
        disc = node.get("discriminator")
        if isinstance(disc, dict):
            for ref in disc.get("mapping", {}).values():
                target = defs[ref.rsplit("/", 1)[-1]]
                required = target.setdefault("required", [])
                if disc["propertyName"] not in required:
                    required.insert(0, disc["propertyName"])
        for value in node.values():
            _require_discriminators(value, defs)
    elif isinstance(node, list):
        for value in node:
            _require_discriminators(value, defs)


def recipe_json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema (draft 2020-12) as a dict."""
    schema = Recipe.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    _require_discriminators(schema, defs)
    for name, extra in _DEF_RULES.items():
        if name in defs:
            _merge(defs[name], extra)
    _merge(schema, _ROOT_RULES)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def recipe_json_schema_text() -> str:
    """The schema as the exact text of the checked-in file (stable key order, trailing newline)."""
    return json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False) + "\n"


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
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
    seen: set[type[BaseModel]] = set()
    out: list[str] = []

    def walk(model: type[BaseModel], path: str, variant: str = "") -> None:
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

"""The JSON Schema (what an editor shows green) and `iad-edge check` (what the appliance accepts) agree.

Both directions, on a table of recipes, with an independent validator (the
``jsonschema`` package, not pydantic): a recipe the schema accepts must load,
and a recipe the appliance refuses must be refused by the schema. The only
exceptions are rules that compare two values (a zone threshold against
``thresholds.pixel``, points against the frame size, crossing polygon edges,
unique zone names): JSON Schema cannot express them; they are listed here so
the list stays exact, and docs/recipes.md names them.
"""

from __future__ import annotations

import pytest
import yaml
from jsonschema import Draft202012Validator

from edge.config import RecipeError, parse_recipe
from edge.config.schema import recipe_json_schema
from tests.fixtures.config import CONFIG_BASE_RECIPE

# (name, old text, new text, accepted?)
AGREE = [
    ("base", "", "", True),
    ("source_without_type", "  type: synthetic\n", "", False),
    ("expert_without_backend", "  backend: onnxruntime\n", "", False),
    ("port_as_text", "port: 1883", 'port: "1883"', False),
    ("pixel_as_text", "pixel: 0.3", 'pixel: "0.3"', False),
    ("enabled_as_text", "  port: 1883\n", '  port: 1883\n  enabled: "yes"\n', False),
    ("enabled_as_bool", "  port: 1883\n", "  port: 1883\n  enabled: false\n", True),
    ("int_as_bool", "  threads: 2", "  threads: true", False),
    ("int_written_as_whole_float", "port: 1883", "port: 1883.0", True),
    ("int_written_as_fraction", "port: 1883", "port: 1883.5", False),
    ("float_written_as_int", "image_score: 0.35", "image_score: 1", True),
    ("name_as_number", "station: s1", "station: 7", False),
    ("resolution_not_multiple_of_14", "resolution: 224", "resolution: 230", False),
    ("empty_providers", "  threads: 2", "  threads: 2\n  providers: []", False),
    ("polygon_two_points", "[[10, 10], [200, 10], [200, 100], [10, 100]]", "[[10, 10], [200, 10]]", False),
    ("polygon_negative_point", "[[10, 10], [200, 10], [200, 100], [10, 100]]", "[[-1, 10], [200, 10], [200, 100], [10, 100]]", False),
    ("point_as_text", "[[10, 10], [200, 10], [200, 100], [10, 100]]", '[["10", 10], [200, 10], [200, 100], [10, 100]]', False),
    ("password_without_user", "  port: 1883\n", "  port: 1883\n  password_file: password.txt\n", False),
    ("password_with_user", "  port: 1883\n", "  port: 1883\n  username: plc\n  password_file: password.txt\n", True),
    ("null_password_without_user", "  port: 1883\n", "  port: 1883\n  password_file: null\n", True),
    ("cert_without_key", "  port: 1883\n", "  port: 8883\n  tls:\n    ca_file: ca.pem\n    cert_file: client.pem\n", False),
    ("key_without_cert", "  port: 1883\n", "  port: 8883\n  tls:\n    ca_file: ca.pem\n    key_file: client.key\n", False),
    ("cert_and_key", "  port: 1883\n", "  port: 8883\n  tls:\n    ca_file: ca.pem\n    cert_file: client.pem\n    key_file: client.key\n", True),
    ("mm2_without_pitch", "pixel_pitch_mm: 0.05\n", "", False),
    ("rules_mm2_without_pitch", "pixel_pitch_mm: 0.05\n", "", False),
    ("always_reject_without_prototypes", "  min_area_px: 16\n", "  min_area_px: 16\n  always_reject: [crack]\n", False),
    ("ignored_zone_with_threshold", "      min_area_mm2: 0.1\n", "      min_area_mm2: 0.1\n      ignore: true\n", False),
    ("ignored_zone", "      pixel: 0.4\n      min_area_mm2: 0.1\n", "      ignore: true\n", True),
    ("unknown_key", "  threads: 2", "  treads: 2", False),
    ("wrong_version", "version: 1", "version: 2", False),
    ("folder_source", "  type: synthetic\n  width: 448\n  height: 448\n", "  type: folder\n  path: images\n", True),
    ("genicam_setting_types", "  type: synthetic\n  width: 448\n  height: 448\n",
     "  type: genicam\n  producer: producer.cti\n  settings:\n    - {node: ExposureTime, value: 1000.5}\n    - {node: ReverseX, value: true}\n", True),
]
# Rules that compare two values: the appliance refuses, JSON Schema cannot say so.
APPLIANCE_ONLY = [
    ("zone_below_pixel_threshold", "      pixel: 0.4", "      pixel: 0.2"),
    ("polygon_outside_frame", "[[10, 10], [200, 10], [200, 100], [10, 100]]", "[[10, 10], [500, 10], [500, 100], [10, 100]]"),
    ("polygon_bow_tie", "[[10, 10], [200, 10], [200, 100], [10, 100]]", "[[10, 10], [200, 100], [200, 10], [10, 100]]"),
    ("roi_outside_frame", "pixel_pitch_mm", "roi: {x: 100, y: 0, width: 400, height: 100}\npixel_pitch_mm"),
    ("duplicate_zone_name", "      min_area_mm2: 0.1\n", "      min_area_mm2: 0.1\n    - name: seal\n      polygon: [[0, 0], [5, 0], [5, 5]]\n"),
]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = recipe_json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _text(name: str, old: str, new: str) -> str:
    if name == "rules_mm2_without_pitch":
        base = CONFIG_BASE_RECIPE.replace("      min_area_mm2: 0.1\n", "").replace("  min_area_px: 16\n", "  min_area_mm2: 0.5\n")
        return base.replace(old, new, 1)
    assert old in CONFIG_BASE_RECIPE, name
    return CONFIG_BASE_RECIPE.replace(old, new, 1)


def _appliance_accepts(text: str, folder) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    try:
        parse_recipe(text, folder / "line3.yaml")
    except RecipeError as exc:
        return False, str(exc)
    return True, ""


def _schema_accepts(text: str, validator: Draft202012Validator) -> tuple[bool, str]:
    errors = list(validator.iter_errors(yaml.safe_load(text)))
    return not errors, "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("name,old,new,accepted", AGREE, ids=[c[0] for c in AGREE])
def test_schema_and_appliance_agree(config_recipe_dir, validator, name, old, new, accepted) -> None:  # type: ignore[no-untyped-def]
    text = _text(name, old, new)
    appliance, why_appliance = _appliance_accepts(text, config_recipe_dir)
    schema, why_schema = _schema_accepts(text, validator)
    assert appliance == accepted, f"appliance: {why_appliance or 'accepted'}"
    assert schema == accepted, f"schema: {why_schema or 'accepted'}"


@pytest.mark.parametrize("name,old,new", APPLIANCE_ONLY, ids=[c[0] for c in APPLIANCE_ONLY])
def test_value_comparisons_are_the_appliance_only_rules(config_recipe_dir, validator, name, old, new) -> None:  # type: ignore[no-untyped-def]
    text = _text(name, old, new)
    assert not _appliance_accepts(text, config_recipe_dir)[0]
    assert _schema_accepts(text, validator)[0], "the schema now expresses this rule: move the case to AGREE"


def test_example_recipes_are_valid_for_both(validator) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "calibration").glob("*.yaml")):
        if path.name.endswith(".generated.yaml"):
            continue
        data = yaml.safe_load(path.read_text())
        assert not list(validator.iter_errors(data)), path

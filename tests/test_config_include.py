"""`include:`: generated values are defaults, the technician's file wins; errors name the included file."""

from __future__ import annotations

import pytest

from edge.config import RecipeError, load_recipe
from tests.fixtures.config import CONFIG_BASE_RECIPE


def _write(folder, recipe_text, generated_text):
    (folder / "line3.generated.yaml").write_text(generated_text)
    path = folder / "line3.yaml"
    path.write_text(recipe_text)
    return path


def test_config_include_gives_defaults_and_recipe_wins(config_recipe_dir):
    text = CONFIG_BASE_RECIPE.replace("version: 1\n", "version: 1\ninclude: line3.generated.yaml\n")
    text = text.replace("  image_score: 0.35\n", "")  # left to the generated file
    path = _write(config_recipe_dir, text, "thresholds:\n  image_score: 0.61\n  pixel: 0.9\n")
    recipe = load_recipe(path)
    assert recipe.thresholds.image_score == pytest.approx(0.61)  # from the generated file
    assert recipe.thresholds.pixel == pytest.approx(0.3)  # written in the recipe: it wins
    assert recipe.included_paths == ((config_recipe_dir / "line3.generated.yaml").resolve(),)


def test_config_include_list_later_files_win(config_recipe_dir):
    (config_recipe_dir / "a.yaml").write_text("decision:\n  window_ms: 300\n  fail_safe: OK\n")
    (config_recipe_dir / "b.yaml").write_text("decision:\n  window_ms: 400\n")
    text = CONFIG_BASE_RECIPE.replace("version: 1\n", "version: 1\ninclude: [a.yaml, b.yaml]\n")
    text = text.replace("decision:\n  window_ms: 150\n", "")
    path = config_recipe_dir / "line3.yaml"
    path.write_text(text)
    recipe = load_recipe(path)
    assert recipe.decision.window_ms == 400
    assert recipe.decision.fail_safe == "OK"


def test_config_include_error_points_into_the_included_file(config_recipe_dir):
    text = CONFIG_BASE_RECIPE.replace("version: 1\n", "version: 1\ninclude: line3.generated.yaml\n")
    text = text.replace("  image_score: 0.35\n", "")
    path = _write(config_recipe_dir, text, "# generated\nthresholds:\n  image_score: 3.5\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    generated = config_recipe_dir / "line3.generated.yaml"
    assert info.value.problems == [f"{generated}:3:3: thresholds.image_score: must be between 0 and 2 (got 3.5)"]


def test_config_include_hash_changes_with_the_included_file(config_recipe_dir):
    text = CONFIG_BASE_RECIPE.replace("version: 1\n", "version: 1\ninclude: line3.generated.yaml\n")
    path = _write(config_recipe_dir, text, "thresholds:\n  image_score: 0.5\n")
    first = load_recipe(path).sha256
    (config_recipe_dir / "line3.generated.yaml").write_text("thresholds:\n  image_score: 0.6\n")
    assert load_recipe(path).sha256 != first


def test_config_included_file_cannot_include(config_recipe_dir):
    text = CONFIG_BASE_RECIPE.replace("version: 1\n", "version: 1\ninclude: line3.generated.yaml\n")
    path = _write(config_recipe_dir, text, "include: other.yaml\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.problems == [
        f"{config_recipe_dir / 'line3.generated.yaml'}:1:1: include: an included file cannot include others"
    ]


def test_default_paths_of_omitted_sections_resolve_against_the_recipe_folder(tmp_path):
    """archive/mqtt/assistant left out: their default paths still live beside the recipe, not in the cwd."""
    from edge.config.loader import parse_recipe

    recipe = parse_recipe(
        "version: 1\nsource: {type: synthetic}\nexpert: {backend: onnxruntime, model: e.onnx}\nbank: {path: b.npz}\n",
        tmp_path / "r.yaml",
    )
    assert recipe.archive.path == tmp_path.resolve() / "archive"
    assert recipe.mqtt.outbox == tmp_path.resolve() / "outbox.sqlite"
    assert recipe.assistant.spool == tmp_path.resolve() / "assistant-spool"

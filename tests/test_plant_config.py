"""Recipe sections sparkplug:/metrics:/console: validated like every other section (errors at their line)."""

from __future__ import annotations

import pytest

from edge.config import RecipeError, load_recipe
from tests.fixtures.expert import write_recipe


def _problems(tmp_path, tiny_expert_dir, overrides: dict, check_files: bool = False) -> list[str]:
    path = write_recipe(tmp_path, tiny_expert_dir, overrides)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, check_files=check_files)
    return err.value.problems


def test_defaults_leave_the_plant_outputs_off(tmp_path, tiny_expert_dir):
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir))
    assert recipe.sparkplug.enabled is False and recipe.metrics.port is None and recipe.console.password_file is None
    assert recipe.sparkplug.bdseq_file == tmp_path / "sparkplug.bdseq"  # relative to the recipe's folder


def test_a_missing_console_password_file_is_reported_at_its_line(tmp_path, tiny_expert_dir):
    (tmp_path / "bank.npz").write_bytes(b"")
    problems = _problems(tmp_path, tiny_expert_dir, {"console": {"password_file": "nope.pw"}}, check_files=True)
    assert any("console.password_file" in p and "nope.pw" in p for p in problems), problems


def test_bad_plant_values_name_the_field(tmp_path, tiny_expert_dir):
    problems = _problems(tmp_path, tiny_expert_dir, {"sparkplug": {"group_id": "plant/A"}})
    assert any("sparkplug.group_id" in p for p in problems), problems
    problems = _problems(tmp_path, tiny_expert_dir, {"console": {"allow_insecure_edit": True}})
    assert any("console.allow_insecure_edit" in p and "password_file" in p for p in problems), problems
    problems = _problems(tmp_path, tiny_expert_dir, {"metrics": {"port": 70000}})
    assert any("metrics.port" in p for p in problems), problems

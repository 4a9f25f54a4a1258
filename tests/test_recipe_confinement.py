"""Path confinement on every recipe the appliance reads: start, live reload, commands and `include:` files.

With ``$IAD_ALLOWED_ROOTS`` set (the units set it) the one recipe loader refuses
any path outside the allowed roots (the recipe's folder is always allowed),
after resolving ``..`` and symlinks, with a ``file:line:col`` line; an
included file outside the roots is refused before it is read.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edge.config import RecipeError, load_recipe
from edge.lane.watch import RecipeWatcher
from tests.fixtures.config import CONFIG_BASE_RECIPE

ROOTS = "/var/lib/iad"


@pytest.fixture
def station(config_recipe_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The recipe folder, and a folder outside it holding a file that would lower the image threshold."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "inc.yaml").write_text("thresholds:\n  image_score: 1.9\n")
    return config_recipe_dir, outside


def _with_include(target: str) -> str:
    return CONFIG_BASE_RECIPE.replace("version: 1\n", f"version: 1\ninclude: {target}\n").replace("  image_score: 0.35\n", "")


def test_include_outside_the_roots_is_refused_with_its_line(station, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder, outside = station
    relative = os.path.relpath(outside / "inc.yaml", folder)  # ../outside…/inc.yaml
    path = folder / "line3.yaml"
    path.write_text(_with_include(relative))
    assert load_recipe(path).thresholds.image_score == pytest.approx(1.9)  # development shell: confinement off
    monkeypatch.setenv("IAD_ALLOWED_ROOTS", ROOTS)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    real = os.path.realpath(outside / "inc.yaml")
    assert info.value.problems == [
        f"{path}:2:1: include: {folder / relative} resolves to {real}, outside the allowed roots "
        f"({os.path.realpath(folder)}, {ROOTS}): move it under one of them or add its folder to $IAD_ALLOWED_ROOTS"
    ]


def test_include_through_a_symlink_out_of_the_folder_is_refused(station, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder, outside = station
    (folder / "inc.yaml").symlink_to(outside / "inc.yaml")
    path = folder / "line3.yaml"
    path.write_text(_with_include("inc.yaml"))
    monkeypatch.setenv("IAD_ALLOWED_ROOTS", ROOTS)
    with pytest.raises(RecipeError, match=r"line3.yaml:2:1: include: .*inc.yaml resolves to .*outside.*/inc.yaml, outside the allowed roots"):
        load_recipe(path)
    (folder / "inc.yaml").unlink()
    (folder / "inc.yaml").write_text("thresholds:\n  image_score: 0.5\n")
    assert load_recipe(path).thresholds.image_score == pytest.approx(0.5)  # a real file in the folder is fine


def test_live_reload_refuses_a_path_outside_and_keeps_the_running_recipe(station, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder, outside = station
    monkeypatch.setenv("IAD_ALLOWED_ROOTS", ROOTS)
    path = folder / "line3.yaml"
    path.write_text(CONFIG_BASE_RECIPE)
    applied: list = []
    status: dict = {}
    watcher = RecipeWatcher(path, lambda r: applied.append(r), status.__setitem__, current=load_recipe(path))
    for edit, field in ((f"path: ../{outside.name}/bank.npz", "bank.path"),
                        ("path: /etc/passwd", "bank.path")):
        path.write_text(CONFIG_BASE_RECIPE.replace("path: line3.bank.npz", edit))
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        assert watcher.poll(settle=False) == "invalid"
        assert applied == []
        assert f"line3.yaml:17:3: {field}: " in status["recipe_error"] and "outside the allowed roots" in status["recipe_error"]
    assert watcher.current.bank.path == folder / "line3.bank.npz"


def test_check_command_refuses_a_model_outside(station) -> None:  # type: ignore[no-untyped-def]
    folder, outside = station
    (outside / "expert.onnx").write_text("placeholder\n")
    path = folder / "line3.yaml"
    path.write_text(CONFIG_BASE_RECIPE.replace("model: expert.onnx", f"model: {outside / 'expert.onnx'}"))
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "check", str(path), "--no-files"], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, IAD_ALLOWED_ROOTS=ROOTS))
    assert proc.returncode != 0
    assert f"{path}:11:3: expert.model: {outside / 'expert.onnx'} resolves to" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr

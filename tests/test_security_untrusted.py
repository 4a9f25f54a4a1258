"""Untrusted files: recipe paths confined to allowed roots, model files checked against manifests, no pickle executed."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import load_recipe
from edge.errors import BankError, ModelLoadError
from edge.preflight import preflight, verify_artifacts
from edge.security import (
    DEFAULT_ROOTS,
    PathNotAllowedError,
    allowed_roots,
    check_recipe_paths,
    recipe_paths,
)
from tests.fixtures.expert import write_recipe


class _Payload:
    """Unpickling this with code execution would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def _recipe(folder: Path, expert_dir: Path, overrides: dict | None = None):
    """write_recipe + load, with assistant.spool written out.

    (A default path of a section left out of the YAML is not resolved against
    the recipe's folder by the loader today: it stays relative to the working
    directory, and the confinement check rightly refuses it; reported.)
    """
    overrides = dict(overrides or {})
    overrides["assistant"] = {"spool": "assistant-spool", **overrides.get("assistant", {})}
    return load_recipe(write_recipe(folder, expert_dir, overrides))


def _expert_copy(tmp_path: Path, tiny_expert_dir: Path) -> Path:
    """The tiny expert copied under the recipe's folder (so the default roots allow it)."""
    target = tmp_path / "engines" / "tiny"
    shutil.copytree(tiny_expert_dir, target)
    return target


# ---------------------------------------------------------------- allowed roots
def test_every_path_field_of_the_recipe_is_found(tmp_path, tiny_expert_dir) -> None:
    recipe = _recipe(tmp_path, tiny_expert_dir, {"mqtt": {"password_file": "pw", "username": "u"}})
    fields = dict(recipe_paths(recipe))
    for key in ("expert.model", "bank.path", "mqtt.outbox", "mqtt.password_file", "archive.path", "assistant.spool"):
        assert key in fields, sorted(fields)


def test_confinement_is_off_without_the_variable_and_on_with_it(tmp_path, tiny_expert_dir) -> None:
    recipe = _recipe(tmp_path, tiny_expert_dir)  # the expert lives in another tmp folder
    assert check_recipe_paths(recipe, environ={}) == []
    with pytest.raises(PathNotAllowedError) as err:
        check_recipe_paths(recipe, environ={"IAD_ALLOWED_ROOTS": "default"})
    text = str(err.value)
    assert f"{tmp_path / 'recipe.yaml'}: expert.model: {tiny_expert_dir / 'expert.onnx'}" in text
    assert "outside the allowed roots" in text and "allowed roots: " in text and "/etc/iad" in text
    # naming the expert's folder as a root makes it acceptable; the recipe's own folder is always allowed
    roots = check_recipe_paths(recipe, environ={"IAD_ALLOWED_ROOTS": f"{tiny_expert_dir}:/var/lib/iad"})
    assert Path(os.path.realpath(tmp_path)) in roots


def test_dot_dot_escapes_and_symlinks_out_of_a_root_are_refused(tmp_path, tiny_expert_dir) -> None:
    station = tmp_path / "station"
    station.mkdir()
    _expert_copy(station, tiny_expert_dir)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (station / "archive-link").symlink_to(outside)
    env = {"IAD_ALLOWED_ROOTS": "/var/lib/iad"}
    ok = _recipe(station, station / "engines" / "tiny", {"archive": {"path": "archive"}})
    check_recipe_paths(ok, environ=env)
    for overrides, field in (({"archive": {"path": "../elsewhere/archive"}}, "archive.path"),
                             ({"archive": {"path": "archive-link/x"}}, "archive.path"),
                             ({"mqtt": {"outbox": "/etc/passwd"}}, "mqtt.outbox")):
        recipe = _recipe(station, station / "engines" / "tiny", overrides)
        with pytest.raises(PathNotAllowedError, match=rf"{field}: .* outside the allowed roots"):
            check_recipe_paths(recipe, environ=env)


def test_roots_from_the_environment(tmp_path) -> None:
    roots = allowed_roots(tmp_path / "r.yaml", {"IAD_ALLOWED_ROOTS": f"/var/lib/iad:default:{tmp_path}"})
    assert roots[0] == Path(os.path.realpath(tmp_path)) and Path("/var/lib/iad") in roots
    assert all(Path(os.path.realpath(r)) in roots for r in DEFAULT_ROOTS)
    with pytest.raises(PathNotAllowedError, match="'relative/dir' is not an absolute path"):
        allowed_roots(None, {"IAD_ALLOWED_ROOTS": "relative/dir"})


# ---------------------------------------------------------------- manifests
def test_a_corrupted_expert_is_refused_before_loading(tmp_path, tiny_expert_dir) -> None:
    expert_dir = _expert_copy(tmp_path, tiny_expert_dir)
    recipe = _recipe(tmp_path, expert_dir)
    sha = verify_artifacts(recipe)["expert"]
    assert sha == json.loads((expert_dir / "manifest.json").read_text())["files"]["expert.onnx"]["sha256"]
    model = expert_dir / "expert.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    model.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match its manifest"):
        verify_artifacts(recipe)
    model.write_bytes(bytes(data[:-100]))
    with pytest.raises(ModelLoadError, match="truncated or replaced"):
        verify_artifacts(recipe)


def test_gguf_files_are_checked_and_production_requires_their_manifest(tmp_path, tiny_expert_dir, tiny_gguf_dir) -> None:
    expert_dir = _expert_copy(tmp_path, tiny_expert_dir)
    gguf_dir = tmp_path / "gguf"
    shutil.copytree(tiny_gguf_dir, gguf_dir)
    model = next(gguf_dir.glob("*.gguf"))
    recipe = _recipe(tmp_path, expert_dir, {"assistant": {"enabled": True, "model": str(model)}})
    env = {"IAD_ALLOWED_ROOTS": "/var/lib/iad"}
    shas = preflight(recipe, environ=env)
    assert set(shas) == {"expert", "assistant.model"}
    data = bytearray(model.read_bytes())
    data[-10] ^= 0x55
    model.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="differs from the manifest"):
        preflight(recipe, environ=env)
    (gguf_dir / "manifest.json").unlink()
    verify_artifacts(recipe)  # development: a GGUF without manifest only gets its header checked
    with pytest.raises(ModelLoadError, match="has no manifest.json beside it; production requires one"):
        preflight(recipe, environ=env)


# ---------------------------------------------------------------- no pickle ever runs
def test_a_bank_with_a_pickled_object_is_refused_and_the_payload_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "bank.npz"
    np.savez(evil, meta=np.array(json.dumps({"format": "x"})), features=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(BankError, match="not a readable iad-edge bank"):
        from edge.bank import Bank

        Bank.load(evil)
    assert not marker.exists()


def test_prototypes_with_a_pickled_object_are_refused_and_the_payload_never_runs(tmp_path) -> None:
    from edge.prototypes import PrototypeError, Prototypes

    marker = tmp_path / "pwned"
    evil = tmp_path / "protos.npz"
    np.savez(evil, meta=np.array("{}"), features=np.array([_Payload(marker)], dtype=object),
             shots=np.zeros((1, 2), np.float32), center=np.zeros(2, np.float32))
    with pytest.raises(PrototypeError, match="not a readable prototypes file"):
        Prototypes.load(evil)
    assert not marker.exists()


def test_a_hugging_face_folder_with_a_malicious_pytorch_model_bin_never_runs_it(tmp_path, export_make_hf_model) -> None:
    torch = pytest.importorskip("torch", reason="the export step (torch) is not installed")
    from export.checkpoint import load_backbone
    from export.errors import CheckpointError

    folder = tmp_path / "hf"
    model = export_make_hf_model()
    model.save_pretrained(folder, safe_serialization=False)
    marker = tmp_path / "pwned"
    state = dict(model.state_dict())
    state["embeddings.cls_token"] = _Payload(marker)
    weights = folder / "pytorch_model.bin"
    weights.unlink(missing_ok=True)
    for extra in folder.glob("*.safetensors"):
        extra.unlink()
    torch.save(state, weights, pickle_module=pickle)
    with pytest.raises(CheckpointError):
        load_backbone(folder)
    assert not marker.exists()

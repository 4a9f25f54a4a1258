"""Runtime manifest check (edge.expert.manifest): a tampered, truncated or orphaned model is refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edge.errors import ModelLoadError
from edge.expert.manifest import load_manifest


@pytest.fixture
def export_copy(tmp_path: Path, export_tiny_dir: Path) -> Path:
    """A private copy of the tiny export that a test may damage."""
    target = tmp_path / "tiny"
    shutil.copytree(export_tiny_dir, target)
    return target / "expert.onnx"


def test_good_export_loads(export_copy: Path) -> None:
    manifest = load_manifest(export_copy)
    assert manifest["kind"] == "dinov2-onnx" and manifest["feature_dim"] == 64


def test_truncated_model_is_refused(export_copy: Path) -> None:
    data = export_copy.read_bytes()
    export_copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated") as exc:
        load_manifest(export_copy)
    assert str(export_copy) in str(exc.value) and "iad-export dinov2" in str(exc.value)


def test_same_size_corruption_is_refused_even_after_a_cached_check(export_copy: Path) -> None:
    load_manifest(export_copy)  # warms the sha cache
    stat = export_copy.stat()
    data = bytearray(export_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    export_copy.write_bytes(bytes(data))
    os.utime(export_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(ModelLoadError, match="does not match its manifest") as exc:
        load_manifest(export_copy)
    assert "rebuild it with `iad-export dinov2" in str(exc.value)
    # verify=False skips the hash (for tools that only need the metadata)
    assert load_manifest(export_copy, verify=False)["resolution"] == 224


def test_missing_manifest(export_copy: Path) -> None:
    (export_copy.parent / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match="no manifest.json beside"):
        load_manifest(export_copy)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_manifest(tmp_path / "expert.onnx")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format="iad-expert/0"), "expected 'iad-expert/1'"),
        (lambda m: m.pop("feature_dim"), "missing key(s) feature_dim"),
        (lambda m: m.update(files={"other.onnx": {"sha256": "0" * 64}}), "does not list expert.onnx"),
    ],
)
def test_bad_manifest_content(export_copy: Path, edit, message: str) -> None:
    path = export_copy.parent / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError) as exc:
        load_manifest(export_copy)
    assert message in str(exc.value)


def test_manifest_not_json(export_copy: Path) -> None:
    (export_copy.parent / "manifest.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match="is not valid JSON"):
        load_manifest(export_copy)

"""`iad-export dinov2 --tiny`: graph contract, parity, manifest, determinism, CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge.expert.manifest import load_manifest, sha256_file
from export.cli import main as export_main
from export.dinov2 import export_dinov2


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_tiny_export_writes_model_and_manifest_with_parity(export_tiny_dir: Path) -> None:
    manifest = json.loads((export_tiny_dir / "manifest.json").read_text())
    assert sorted(p.name for p in export_tiny_dir.iterdir()) == ["expert.onnx", "manifest.json"]
    assert manifest["format"] == "iad-expert/1"
    assert manifest["kind"] == "dinov2-onnx"
    assert manifest["architecture"] == "dinov2-tiny"
    assert (manifest["resolution"], manifest["patch_size"], manifest["grid"]) == (224, 14, [16, 16])
    assert manifest["feature_dim"] == 64 and manifest["num_register_tokens"] == 0
    assert manifest["opset"] == 17
    assert 0.0 <= manifest["parity_max_abs_error"] <= 1e-4
    assert set(manifest["versions"]) == {"onnx", "onnxruntime", "torch", "transformers"}
    assert manifest["source"]["format"] == "tiny" and manifest["source"]["seed"] == 0
    assert len(manifest["source"]["sha256"]) == 64
    entry = manifest["files"]["expert.onnx"]
    assert entry["sha256"] == sha256_file(export_tiny_dir / "expert.onnx")
    assert entry["bytes"] == (export_tiny_dir / "expert.onnx").stat().st_size
    assert [i["name"] for i in manifest["inputs"]] == ["tiles", "bank"]
    assert manifest["outputs"][1]["shape"] == ["B", 16, 16, 64]
    assert manifest["created_at"].endswith("+00:00")
    assert load_manifest(export_tiny_dir / "expert.onnx")["architecture"] == "dinov2-tiny"


def test_tiny_graph_io_contract_and_dynamic_batch_and_bank(export_tiny_dir: Path) -> None:
    session = _session(export_tiny_dir / "expert.onnx")
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    outputs = {o.name: (o.type, o.shape) for o in session.get_outputs()}
    assert inputs == {"tiles": ("tensor(uint8)", ["B", 224, 224, 3]), "bank": ("tensor(float)", ["N", 64])}
    assert outputs == {"distances": ("tensor(float)", ["B", 16, 16]), "features": ("tensor(float)", ["B", 16, 16, 64])}

    rng = np.random.default_rng(3)
    for batch, bank_size in ((1, 1), (3, 500)):
        tiles = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        bank = rng.standard_normal((bank_size, 64)).astype(np.float32)
        bank /= np.linalg.norm(bank, axis=1, keepdims=True)
        distances, features = session.run(["distances", "features"], {"tiles": tiles, "bank": bank})
        assert distances.shape == (batch, 16, 16) and features.shape == (batch, 16, 16, 64)
        np.testing.assert_allclose(np.linalg.norm(features, axis=-1), 1.0, atol=1e-5)
        # distances are 1 - max cosine similarity, computed here independently
        expected = 1.0 - (features.reshape(-1, 64) @ bank.T).max(axis=1).reshape(batch, 16, 16)
        np.testing.assert_allclose(distances, expected, atol=1e-5)


def test_bank_of_own_features_gives_zero_distance_and_rgb_order_matters(export_tiny_dir: Path) -> None:
    session = _session(export_tiny_dir / "expert.onnx")
    rng = np.random.default_rng(4)
    tile = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    dummy = np.ones((1, 64), np.float32) / 8.0
    _, features = session.run(None, {"tiles": tile, "bank": dummy})
    distances, _ = session.run(None, {"tiles": tile, "bank": features.reshape(-1, 64)})
    assert float(np.abs(distances).max()) < 1e-5
    # The graph normalises per channel (ImageNet mean/std), so BGR input gives other features.
    _, swapped = session.run(None, {"tiles": np.ascontiguousarray(tile[..., ::-1]), "bank": dummy})
    assert float(np.abs(swapped - features).max()) > 1e-3


def test_tiny_export_is_deterministic_and_seed_changes_weights(tmp_path: Path, export_tiny_dir: Path) -> None:
    again = export_dinov2(tmp_path / "again", tiny=True)
    first = json.loads((export_tiny_dir / "manifest.json").read_text())
    assert again["files"]["expert.onnx"]["sha256"] == first["files"]["expert.onnx"]["sha256"]
    other = export_dinov2(tmp_path / "seed1", tiny=True, seed=1)
    assert other["files"]["expert.onnx"]["sha256"] != first["files"]["expert.onnx"]["sha256"]
    assert other["source"]["seed"] == 1 and other["source"]["sha256"] != first["source"]["sha256"]


def test_cli_tiny_other_resolution_prints_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "engines" / "tiny112"
    assert export_main(["dinov2", "--tiny", "--resolution", "112", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}/expert.onnx" in captured.out and f"wrote {out}/manifest.json" in captured.out
    assert "parity max abs error" in captured.out
    assert "[3/4] parity check" in captured.err
    manifest = load_manifest(out / "expert.onnx")
    assert manifest["resolution"] == 112 and manifest["grid"] == [8, 8]
    session = _session(out / "expert.onnx")
    distances, _ = session.run(None, {"tiles": np.zeros((2, 112, 112, 3), np.uint8), "bank": np.eye(4, 64, dtype=np.float32)})
    assert distances.shape == (2, 8, 8)
    # no staging folders left beside the output
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny112"]


def test_reexport_replaces_files_and_keeps_unrelated_ones(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "bank.npz").write_bytes(b"keep me")
    export_dinov2(out, tiny=True, resolution=56)
    export_dinov2(out, tiny=True, resolution=56, seed=2)
    assert sorted(p.name for p in out.iterdir()) == ["bank.npz", "expert.onnx", "manifest.json"]
    assert (out / "bank.npz").read_bytes() == b"keep me"
    assert load_manifest(out / "expert.onnx")["source"]["seed"] == 2


def test_post_export_extension_hook_sees_args_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``export/commands/_dinov2_*.py`` modules (e.g. TensorRT --engine) add options and run after the export."""
    import types

    import export.commands.dinov2 as command

    seen: dict = {}
    extension = types.ModuleType("export.commands._dinov2_probe")
    extension.add_arguments = lambda parser: parser.add_argument("--probe", action="store_true")

    def after_export(args, out_dir, manifest, say):  # type: ignore[no-untyped-def]
        seen.update(probe=args.probe, files=sorted(p.name for p in out_dir.iterdir()), arch=manifest["architecture"])
        say("probe ran")
        return {**manifest, "architecture": "dinov2-tiny+probe"}

    extension.after_export = after_export
    monkeypatch.setattr(command, "extensions", lambda: [extension])
    assert export_main(["dinov2", "--tiny", "--resolution", "28", "--probe", "--out", str(tmp_path / "x")]) == 0
    assert seen == {"probe": True, "files": ["expert.onnx", "manifest.json"], "arch": "dinov2-tiny"}
    captured = capsys.readouterr()
    assert "probe ran" in captured.err and "dinov2-tiny+probe @ 28px" in captured.out

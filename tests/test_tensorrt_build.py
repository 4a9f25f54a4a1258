"""TensorRT engine build logic (export/tensorrt.py) against the TensorRT test double.

The double (tests/doubles/fake_tensorrt.py) records what our code asks TensorRT
for; a plan it "builds" runs the parsed ONNX with ONNX Runtime, so the parity
check is exercised end to end. Real builds: tests/test_tensorrt_gpu.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.expert.manifest import load_manifest, sha256_file
from export.errors import ParityError
from export.tensorrt import (
    EngineBuildError,
    EngineProfile,
    OrtReference,
    build_engine,
    make_mixed_precision_onnx,
    measure_parity,
)
from tests.doubles import fake_tensorrt


@pytest.fixture
def trt_onnx_dir(tiny_expert_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny expert (expert.onnx + manifest.json) that a test may add an engine to."""
    dest = tmp_path / "engines" / "tiny"
    shutil.copytree(tiny_expert_dir, dest)
    return dest


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_trt10_build_sets_fp16_flags_profile_and_fp32_layers(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path) -> None:
    world = fake_tensorrt.install(monkeypatch, version="10.3.0", fp16_flag=True)
    onnx_manifest = _manifest(trt_onnx_dir)
    r, d = onnx_manifest["resolution"], onnx_manifest["feature_dim"]
    profile = EngineProfile(tiles=(1, 4, 8), bank=(1, 512, 4096))
    manifest = build_engine(trt_onnx_dir / "expert.onnx", trt_onnx_dir, profile)

    network = world.builder.networks[0]
    config = world.builder.configs[0]
    trt = sys.modules["tensorrt"]
    assert network.flags == 0  # weakly typed on TensorRT 10 (explicit batch is implicit)
    assert network.onnx_path == str(trt_onnx_dir / "expert.onnx")
    assert config.flags == {trt.BuilderFlag.FP16, trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS}
    assert config.memory_pools[trt.MemoryPoolType.WORKSPACE] == 4 << 30
    shapes = config.profiles[0].shapes
    assert shapes["tiles"] == ((1, r, r, 3), (4, r, r, 3), (8, r, r, 3))
    assert shapes["bank"] == ((1, d), (512, d), (4096, d))

    layers = {layer.name: layer for layer in network.layers}
    norms = [l for l in network.layers if l.type in (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX)]
    assert norms and all(l.precision == trt.float32 and l.output_types == {0: trt.float32} for l in norms)
    for head in ("/ReduceL2", "/Div", "/MatMul", "/ReduceMax", "/Sub"):  # L2 normalise + cosine kNN head
        assert layers[head].precision == trt.float32, head
    backbone_matmuls = [l for l in network.layers if l.type == trt.LayerType.MATRIX_MULTIPLY and l.name.startswith("/backbone/encoder/")]
    assert backbone_matmuls and not any(l.precision_is_set for l in backbone_matmuls)  # free to run FP16
    assert not any(l.precision_is_set for l in network.layers if l.type in (trt.LayerType.SHAPE, trt.LayerType.CONSTANT))
    assert sorted(manifest["tensorrt"]["fp32_layers"]) == sorted(l.name for l in network.layers if l.precision_is_set)

    section = manifest["tensorrt"]
    assert section["version"] == "10.3.0"
    assert section["compute_capability"] == "8.7"
    assert section["strongly_typed"] is False and section["precision"] == "fp16-mixed"
    assert section["profile"] == {"tiles": [1, 4, 8], "bank": [1, 512, 4096]}
    parity = section["parity"]
    assert parity["distances_max_abs_error"] < 1e-5 and parity["ranking_preserved"] is True  # the double runs FP32
    # One manifest serves both backends: ONNX entry kept, plan entry added, both verifiable.
    assert set(manifest["files"]) == {"expert.onnx", "expert.plan"}
    assert manifest["files"]["expert.plan"]["sha256"] == sha256_file(trt_onnx_dir / "expert.plan")
    load_manifest(trt_onnx_dir / "expert.plan")
    load_manifest(trt_onnx_dir / "expert.onnx")
    assert sorted(p.name for p in trt_onnx_dir.iterdir()) == ["expert.onnx", "expert.plan", "manifest.json"]
    assert world.monitor_steps == [True, True, True]  # progress bars followed the build and never cancelled it


def test_timing_cache_is_persisted_and_reused(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path) -> None:
    world = fake_tensorrt.install(monkeypatch)
    build_engine(trt_onnx_dir / "expert.onnx", trt_onnx_dir, parity=False)
    cache = trt_onnx_dir.parent / "trt-timing-10.3.0.cache"  # engines/ beside the engine folders
    assert cache.is_file()
    first = cache.read_bytes()
    assert world.builder.configs[0].timing_cache_inputs == [b""]
    build_engine(trt_onnx_dir / "expert.onnx", trt_onnx_dir, parity=False)
    assert world.builder.configs[0].timing_cache_inputs == [first]  # second build starts from the saved cache
    # A cache from another TensorRT/GPU is refused by set_timing_cache: start fresh, do not fail.
    cache.write_bytes(b"foreign cache")
    build_engine(trt_onnx_dir / "expert.onnx", trt_onnx_dir, parity=False)
    assert world.builder.configs[0].timing_cache_inputs == [b"foreign cache", b""]


def test_trt11_builds_strongly_typed_from_mixed_precision_onnx(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path, tmp_path: Path) -> None:
    world = fake_tensorrt.install(monkeypatch, version="11.1.0", fp16_flag=False)
    out = tmp_path / "engine-only"
    manifest = build_engine(trt_onnx_dir / "expert.onnx", out, EngineProfile.from_limits(max_tiles=4, max_bank=2048))
    trt = sys.modules["tensorrt"]
    network = world.builder.networks[0]
    assert network.flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert world.builder.configs[0].flags == set()  # no precision flags exist on TensorRT 11
    assert network.onnx_path.endswith("expert.fp16.onnx")
    assert not any(l.precision_is_set for l in network.layers)
    halves = [l for l in network.layers if any(l.get_output(i).dtype == trt.float16 for i in range(l.num_outputs))]
    assert halves, "the parsed graph should carry FP16 tensors"
    layers = {l.name: l for l in network.layers}
    for head in ("/MatMul", "/ReduceMax", "/Sub"):  # the cosine kNN head stays FP32 in the typed graph
        assert layers[head].get_output(0).dtype == trt.float32, head
    section = manifest["tensorrt"]
    assert section["strongly_typed"] is True and "mixed_precision_onnx" in section
    # The fake engine ran the mixed-precision graph on ONNX Runtime: real FP16 numerics, within the FP16 limit.
    assert 0 < section["parity"]["distances_max_abs_error"] <= 2e-2
    assert section["parity"]["ranking_preserved"] is True
    assert list(manifest["files"]) == ["expert.onnx", "expert.plan"]  # graph identity first (banks match it)
    assert sorted(p.name for p in out.iterdir()) == ["expert.plan", "manifest.json"]  # no mixed ONNX left behind


def test_mixed_precision_onnx_parity_on_cpu(tiny_expert_dir: Path, tmp_path: Path) -> None:
    """The TensorRT 11 preparation step on its own: FP16 graph vs FP32 graph, both on ONNX Runtime CPU."""
    summary = make_mixed_precision_onnx(tiny_expert_dir / "expert.onnx", tmp_path / "fp16.onnx")
    assert 0 < summary["fp32_nodes"] < summary["nodes"]
    manifest = _manifest(tiny_expert_dir)
    ref = OrtReference(tiny_expert_dir / "expert.onnx", manifest["feature_dim"])
    cand = OrtReference(tmp_path / "fp16.onnx", manifest["feature_dim"])
    bank: dict[str, np.ndarray] = {}
    result = measure_parity(ref, lambda b: bank.update(b=b), lambda t: cand(t, bank["b"]), manifest["resolution"], manifest["feature_dim"])
    assert 0 < result["distances_max_abs_error"] <= 2e-2
    assert result["ranking_preserved"] and result["spearman"] > 0.99


def test_parity_failure_writes_nothing(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path, tmp_path: Path) -> None:
    fake_tensorrt.install(monkeypatch, output_noise=0.5)
    out = tmp_path / "bad"
    with pytest.raises(ParityError, match="engine parity failed: distances max abs error"):
        build_engine(trt_onnx_dir / "expert.onnx", out)
    assert list(out.iterdir()) == []


def test_build_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path, tmp_path: Path) -> None:
    fake_tensorrt.install(monkeypatch, fail_build=True)
    out = tmp_path / "bad"
    with pytest.raises(EngineBuildError, match="could not build an engine"):
        build_engine(trt_onnx_dir / "expert.onnx", out)
    assert list(out.iterdir()) == []


def test_corrupt_onnx_is_refused_before_tensorrt(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path) -> None:
    world = fake_tensorrt.install(monkeypatch)
    onnx_path = trt_onnx_dir / "expert.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:1000])
    from edge.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="truncated or replaced"):
        build_engine(onnx_path, trt_onnx_dir)
    assert world.builders == []


def test_missing_tensorrt_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as on a machine without it
    with pytest.raises(EngineBuildError, match="needs the `tensorrt` Python package"):
        build_engine(trt_onnx_dir / "expert.onnx", trt_onnx_dir)


def test_bad_profile() -> None:
    with pytest.raises(EngineBuildError, match="min <= opt <= max"):
        EngineProfile(tiles=(4, 2, 8))


def test_cli_engine_command(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.cli import main

    fake_tensorrt.install(monkeypatch)
    rc = main(["engine", "--onnx", str(trt_onnx_dir / "expert.onnx"), "--max-tiles", "4", "--max-bank", "2048"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"wrote {trt_onnx_dir / 'expert.plan'}" in out
    assert "parity vs ONNX FP32: distances max abs error" in out and "ranking preserved True" in out
    assert _manifest(trt_onnx_dir)["tensorrt"]["profile"] == {"tiles": [1, 4, 4], "bank": [1, 512, 2048]}


def test_cli_engine_without_tensorrt(monkeypatch: pytest.MonkeyPatch, trt_onnx_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    rc = main(["engine", "--onnx", str(trt_onnx_dir / "expert.onnx")])
    assert rc == 1
    assert "iad-export engine: error: building an engine needs the `tensorrt` Python package" in capsys.readouterr().err
    assert not (trt_onnx_dir / "expert.plan").exists()


def test_dinov2_engine_flag_builds_the_plan_after_the_export(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from export.cli import main

    fake_tensorrt.install(monkeypatch)
    out = tmp_path / "engines" / "tiny"
    rc = main(["dinov2", "--tiny", "--resolution", "112", "--out", str(out), "--engine", "--max-tiles", "2", "--max-bank", "512"])
    assert rc == 0
    manifest = _manifest(out)
    assert list(manifest["files"]) == ["expert.onnx", "expert.plan"]
    assert manifest["tensorrt"]["profile"] == {"tiles": [1, 2, 2], "bank": [1, 128, 512]}
    assert manifest["tensorrt"]["parity"]["ranking_preserved"] is True
    assert "parity vs ONNX FP32" in capsys.readouterr().out


def test_dinov2_without_engine_flag_builds_no_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from export.cli import main

    world = fake_tensorrt.install(monkeypatch)
    out = tmp_path / "tiny"
    assert main(["dinov2", "--tiny", "--resolution", "112", "--out", str(out)]) == 0
    assert world.builders == [] and not (out / "expert.plan").exists()

"""TensorRT runtime backend (edge/expert/tensorrt.py) and the engine manifest check, against the test double.

The double's engine runs the plan's ONNX graph with ONNX Runtime on the bytes
at the bound fake device addresses, so these tests check the buffer plumbing
(sizes, copies, shapes, addresses, stream) by comparing numbers with the ONNX
Runtime backend, plus the calls the backend must (and must not) make per frame.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config.expert import OnnxRuntimeExpertConfig, TensorRTExpertConfig
from edge.errors import BadFrameError, BankError, ModelLoadError
from edge.expert import load_expert
from edge.expert.manifest import sha256_file
from export.tensorrt import EngineProfile, build_engine
from tests.doubles import fake_tensorrt

PROFILE = EngineProfile(tiles=(1, 4, 4), bank=(1, 256, 1024))


@pytest.fixture
def trt_engine_dir(monkeypatch: pytest.MonkeyPatch, tiny_expert_dir: Path, tmp_path: Path) -> Path:
    """The tiny expert with an engine built by the double (TensorRT 10.3.0, compute capability 8.7)."""
    dest = tmp_path / "engines" / "tiny"
    shutil.copytree(tiny_expert_dir, dest)
    fake_tensorrt.install(monkeypatch)
    build_engine(dest / "expert.onnx", dest, PROFILE, parity=False)
    return dest


def _tiles(n: int, r: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, r, r, 3), dtype=np.uint8)


def _bank(expert, r: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    unit = np.zeros((1, expert.feature_dim), np.float32)
    unit[0, 0] = 1
    expert.set_bank(unit)
    _, feats = expert.run(_tiles(2, r, seed=9))
    return feats.reshape(-1, expert.feature_dim)[:200].copy()


def test_backend_matches_onnxruntime_and_sizes_buffers_once(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path) -> None:
    world = fake_tensorrt.install(monkeypatch)  # fresh recording for the load
    expert = load_expert(TensorRTExpertConfig(engine=trt_engine_dir / "expert.plan", max_tiles=4, max_bank=1024))
    ort_expert = load_expert(OnnxRuntimeExpertConfig(model=trt_engine_dir / "expert.onnx"))
    r, d = expert.resolution, expert.feature_dim
    g = r // expert.patch_size
    assert expert.providers[0].startswith("TensorRT 10.3.0 (pycuda")

    # Device buffers: allocated once, for the profile maxima (4 tiles, 1024 bank rows).
    assert world.allocations == [4 * r * r * 3, 1024 * d * 4, 4 * g * g * 4, 4 * g * g * d * 4]
    assert world.pinned == [((4, r, r, 3), np.dtype(np.uint8)), ((4, g, g), np.dtype(np.float32)), ((4, g, g, d), np.dtype(np.float32))]
    context = world.context
    assert sorted(context.address_calls) == ["bank", "distances", "features", "tiles"]  # bound once at load

    bank = _bank(ort_expert, r)
    ort_expert.set_bank(bank)
    expert.set_bank(bank)
    uploads_before = [c for c in world.copies if c[0] == "htod"]
    tiles = _tiles(3, r)
    for _ in range(3):
        distances, features = expert.run(tiles)
    ref_d, ref_f = ort_expert.run(tiles)
    np.testing.assert_allclose(distances, ref_d, atol=1e-5)
    np.testing.assert_allclose(features, ref_f, atol=1e-5)
    assert distances.shape == (3, g, g) and features.shape == (3, g, g, d)

    # Per frame: no bank upload, no new allocation, no re-binding; execute_async_v3 on our stream.
    assert [c for c in world.copies if c[0] == "htod"] == uploads_before
    assert uploads_before[-1] == ("htod", context.addresses["bank"], bank.nbytes)
    assert len(world.allocations) == 4
    assert sorted(context.address_calls) == ["bank", "distances", "features", "tiles"]
    assert context.executions[-3:] == [world.streams[0]] * 3
    assert ("tiles", (3, r, r, 3)) in context.shape_calls and ("bank", bank.shape) in context.shape_calls
    # Each run copies exactly the batch in and the batch out (not the whole max-size buffers).
    assert world.copies[-3:] == [
        ("htod_async", context.addresses["tiles"], 3 * r * r * 3),
        ("dtoh_async", context.addresses["distances"], 3 * g * g * 4),
        ("dtoh_async", context.addresses["features"], 3 * g * g * d * 4),
    ]

    # A new bank (recalibration) is one more upload; a batch above the profile is split.
    expert.set_bank(bank[:50])
    assert len([c for c in world.copies if c[0] == "htod"]) == len(uploads_before) + 1
    big = _tiles(6, r, seed=2)
    d6, _ = expert.run(big)
    ort_expert.set_bank(bank[:50])
    np.testing.assert_allclose(d6, ort_expert.run(big)[0], atol=1e-5)
    assert ("tiles", (4, r, r, 3)) in context.shape_calls and ("tiles", (2, r, r, 3)) in context.shape_calls

    expert.close()
    assert len(world.freed) == 4


def test_same_verdicts_as_onnxruntime_on_synthetic_frames(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path, tmp_path: Path) -> None:
    """The Inspector on the TensorRT backend gives the ORT backend's scores and verdicts."""
    from edge.config import load_recipe
    from edge.inspector import Inspector
    from tests.fixtures.expert import synthetic_frames, write_recipe

    fake_tensorrt.install(monkeypatch)
    ort_recipe = load_recipe(write_recipe(tmp_path, trt_engine_dir, name="ort.yaml"))
    good = [f.image for f in synthetic_frames(4, defect=None, width=112, height=112)]
    ort_inspector = Inspector.from_recipe(ort_recipe, load_bank=False)
    from edge.bank import build_bank

    bank = build_bank(ort_inspector.expert, good, ort_recipe, progress=False)
    bank_path = tmp_path / "bank.npz"
    bank.save(bank_path)
    ort_inspector = Inspector.from_recipe(ort_recipe, bank_path=bank_path)
    trt_recipe = ort_recipe.model_copy(update={"expert": TensorRTExpertConfig(
        engine=trt_engine_dir / "expert.plan", max_tiles=4, max_bank=1024)})
    trt_inspector = Inspector.from_recipe(trt_recipe, bank_path=bank_path)
    frames = [f.image for f in synthetic_frames(6, seed=11, width=112, height=112)]
    for image in frames:
        a, b = ort_inspector.inspect(image), trt_inspector.inspect(image)
        assert a.verdict == b.verdict
        assert abs(a.score - b.score) < 1e-5


def _on_thread(name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a fresh thread (as the lane runs frames on ``lane-inspect``); re-raise what it raised."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join(60)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_frames_on_another_thread_than_the_load(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path) -> None:
    """pycuda's context is current per thread: loading on one thread and running frames, a new bank and
    close on others (lane-inspect, the reload thread) must work and leave no context pushed anywhere."""
    world = fake_tensorrt.install(monkeypatch)
    expert = _on_thread("loader", lambda: load_expert(
        TensorRTExpertConfig(engine=trt_engine_dir / "expert.plan", max_tiles=4, max_bank=1024)))
    ort_expert = load_expert(OnnxRuntimeExpertConfig(model=trt_engine_dir / "expert.onnx"))
    r = expert.resolution
    bank = _bank(ort_expert, r)
    ort_expert.set_bank(bank)
    _on_thread("reload", lambda: expert.set_bank(bank))
    tiles = _tiles(3, r)

    def frame() -> tuple[Any, Any, Any]:
        distances, features = expert.run(tiles)
        return distances, features, world.current_context()

    distances, features, left_current = _on_thread("lane-inspect", frame)
    ref_d, ref_f = ort_expert.run(tiles)
    np.testing.assert_allclose(distances, ref_d, atol=1e-5)
    np.testing.assert_allclose(features, ref_f, atol=1e-5)
    assert left_current is None  # pushed for the call, popped after it
    assert world.no_context_errors == []
    assert world.pushes > 0
    _on_thread("shutdown", expert.close)
    assert len(world.freed) == 4
    assert world.current_context() is None


# --- manifest check at load ---------------------------------------------------------------------


def _edit_manifest(engine_dir: Path, **tensorrt_changes: object) -> None:
    path = engine_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tensorrt"].update(tensorrt_changes)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("settings", "changes", "config", "message"),
    [
        ({"version": "10.4.0"}, {}, {}, r"tensorrt.version mismatch: the engine was built for TensorRT 10.3.0, this machine has TensorRT 10.4.0"),
        ({"compute_capability": (8, 6)}, {}, {}, r"tensorrt.compute_capability mismatch: .*8.7 \(Fake Orin \(test double\)\), this GPU has 8.6"),
        ({}, {}, {"max_tiles": 8}, r"tensorrt.profile.tiles mismatch: the engine was built for at most 4 tiles per batch"),
        ({}, {}, {"max_bank": 65536}, r"tensorrt.profile.bank mismatch: .*at most 1024 rows"),
    ],
)
def test_mismatched_engine_is_refused_with_rebuild_hint(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path,
                                                        settings: dict, changes: dict, config: dict, message: str) -> None:
    world = fake_tensorrt.install(monkeypatch, **settings)
    cfg = TensorRTExpertConfig(engine=trt_engine_dir / "expert.plan", **{"max_tiles": 4, "max_bank": 1024, **config})
    with pytest.raises(ModelLoadError, match=message) as info:
        load_expert(cfg)
    assert f"iad-export dinov2 --tiny --resolution 112 --engine --out {trt_engine_dir}" in str(info.value)
    assert world.contexts == []  # refused before deserializing


def test_bank_that_does_not_fit_the_engine(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path) -> None:
    fake_tensorrt.install(monkeypatch)
    expert = load_expert(TensorRTExpertConfig(engine=trt_engine_dir / "expert.plan", max_tiles=4, max_bank=1024))
    with pytest.raises(BankError, match=r"expected \[N, 64\]"):
        expert.set_bank(np.ones((10, 32), np.float32))
    with pytest.raises(BankError, match=r"2000 rows but the engine .* takes 1..1024 .*coreset_max: 1024"):
        expert.set_bank(np.ones((2000, expert.feature_dim), np.float32))
    with pytest.raises(BankError, match="no memory bank installed"):
        expert.run(_tiles(1, expert.resolution))
    with pytest.raises(BadFrameError, match="tiles must be uint8"):
        expert.run(np.zeros((1, 10, 10, 3), np.uint8))


def test_truncated_engine_is_refused(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path) -> None:
    world = fake_tensorrt.install(monkeypatch)
    plan = trt_engine_dir / "expert.plan"
    plan.write_bytes(plan.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="truncated or replaced file"):
        load_expert(TensorRTExpertConfig(engine=plan, max_tiles=4, max_bank=1024))
    assert world.contexts == []


def test_corrupt_engine_that_tensorrt_cannot_deserialize(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path) -> None:
    """Even when the manifest vouches for the bytes (rewritten with it), a plan TensorRT rejects is a clear error."""
    fake_tensorrt.install(monkeypatch)
    plan = trt_engine_dir / "expert.plan"
    plan.write_bytes(b"\0" * 4096)
    path = trt_engine_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["expert.plan"] = {"sha256": sha256_file(plan), "bytes": 4096}
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="TensorRT could not deserialize the plan"):
        load_expert(TensorRTExpertConfig(engine=plan, max_tiles=4, max_bank=1024))


def test_onnx_manifest_without_engine_section(monkeypatch: pytest.MonkeyPatch, tiny_expert_dir: Path, tmp_path: Path) -> None:
    fake_tensorrt.install(monkeypatch)
    dest = tmp_path / "x"
    shutil.copytree(tiny_expert_dir, dest)
    plan = dest / "expert.plan"
    plan.write_bytes(b"junk")
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["files"]["expert.plan"] = {"sha256": sha256_file(plan), "bytes": 4}
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="no 'tensorrt' section"):
        load_expert(TensorRTExpertConfig(engine=plan))


def test_missing_tensorrt_at_runtime(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ModelLoadError, match="needs the `tensorrt` Python package.*providers: \\[tensorrt, cuda, cpu\\]"):
        load_expert(TensorRTExpertConfig(engine=trt_engine_dir / "expert.plan", max_tiles=4, max_bank=1024))


def test_no_cuda_at_runtime(monkeypatch: pytest.MonkeyPatch, trt_engine_dir: Path) -> None:
    fake_tensorrt.install(monkeypatch)
    for name in ("pycuda", "pycuda.driver", "pycuda.autoprimaryctx", "cuda", "cuda.bindings"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModelLoadError, match="no usable CUDA for the TensorRT backend"):
        load_expert(TensorRTExpertConfig(engine=trt_engine_dir / "expert.plan", max_tiles=4, max_bank=1024))

"""GPU-only checks of the engine routes (marked ``gpu``; each skips with its reason elsewhere).

* cuda-python memory adapter of the TensorRT backend: real allocations, pinned
  memory, async copies on a stream (needs a GPU and cuda-python).
* ONNX Runtime CUDA execution provider: same distances as the CPU provider
  (needs onnxruntime-gpu with a working CUDA/cuDNN).
* Real TensorRT: engine build, FP16 parity (patch distances max abs error
  <= 2e-2, image-score ranking preserved on synthetic parts) and the runtime
  backend's verdicts equal to ONNX Runtime's (needs ``tensorrt``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _gpu_reason() -> str:
    """'' when an NVIDIA GPU is usable, else why not (cheap probe, no GPU library required)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError:
            cudart = None
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        return "" if int(err) == 0 and count > 0 else f"no CUDA device (cudaGetDeviceCount error {int(err)})"
    try:
        import torch

        return "" if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"
    except ImportError:
        return "no GPU probe available (neither cuda-python nor torch installed)"


GPU_REASON = _gpu_reason()
needs_gpu = pytest.mark.skipif(bool(GPU_REASON), reason=GPU_REASON or "gpu present")


def _has(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # parent package missing
        return False


@needs_gpu
@pytest.mark.skipif(not (_has("cuda.bindings") or _has("cuda.cudart")), reason="cuda-python is not installed")
def test_cuda_python_memory_roundtrip() -> None:
    from edge.expert.cuda_memory import CudaPythonMemory

    cuda = CudaPythonMemory()
    assert cuda.compute_capability().count(".") == 1 and cuda.device_name()
    stream = cuda.stream()
    data = np.arange(4 * 56 * 56 * 3, dtype=np.uint8).reshape(4, 56, 56, 3)
    host_in = cuda.pinned(data.shape, np.uint8)
    host_out = cuda.pinned(data.shape, np.uint8)
    host_in[...] = data
    bank = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
    ptr = cuda.alloc(data.nbytes)
    other = cuda.alloc(bank.nbytes)
    try:
        cuda.htod_async(ptr, host_in, stream)
        cuda.dtoh_async(host_out, ptr, stream)
        cuda.synchronize(stream)
        np.testing.assert_array_equal(host_out, data)
        cuda.htod(other, bank)
        back = cuda.pinned(bank.shape, np.float32)
        cuda.dtoh_async(back, other, stream)
        cuda.synchronize(stream)
        np.testing.assert_array_equal(back, bank)
        cuda.free_pinned(back)
    finally:
        cuda.free(ptr)
        cuda.free(other)
        cuda.free_pinned(host_in)
        cuda.free_pinned(host_out)


@needs_gpu
@pytest.mark.skipif(not (_has("cuda.bindings") or _has("cuda.cudart")), reason="cuda-python is not installed")
def test_backend_buffers_on_real_cuda_with_tensorrt_double(monkeypatch: pytest.MonkeyPatch, tiny_expert_dir: Path, tmp_path: Path) -> None:
    """The TensorRT backend's runner with real CUDA memory (cuda-python); only TensorRT is the test double.

    Device buffers, pinned staging, async copies and the stream are real; the
    double's engine reads the real device buffers and runs the ONNX graph, so
    a wrong size, offset or missing synchronisation shows as wrong numbers.
    """
    import sys

    from edge.expert.cuda_memory import CudaPythonMemory
    from edge.expert.tensorrt import TrtEngineRunner
    from export.tensorrt import EngineProfile, OrtReference, build_engine
    from tests.doubles import fake_tensorrt

    world = fake_tensorrt.install(monkeypatch)
    engine_dir = tmp_path / "e"
    shutil.copytree(tiny_expert_dir, engine_dir)
    manifest = build_engine(engine_dir / "expert.onnx", engine_dir, EngineProfile(tiles=(1, 4, 4), bank=(1, 256, 1024)), parity=False)
    world.real_cuda = CudaPythonMemory()
    runner = TrtEngineRunner((engine_dir / "expert.plan").read_bytes(), sys.modules["tensorrt"], world.real_cuda)
    reference = OrtReference(engine_dir / "expert.onnx", manifest["feature_dim"])
    r = manifest["resolution"]
    rng = np.random.default_rng(1)
    bank = rng.standard_normal((300, manifest["feature_dim"])).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    try:
        runner.set_bank(bank)
        for n in (1, 3, 4, 6):  # 6 > profile max: split into 4 + 2
            tiles = rng.integers(0, 256, (n, r, r, 3), dtype=np.uint8)
            distances, features = runner.run(tiles)
            ref_d, ref_f = reference(tiles, bank)
            np.testing.assert_allclose(distances, ref_d, atol=1e-5)
            np.testing.assert_allclose(features, ref_f, atol=1e-5)
        runner.set_bank(bank[:40])  # recalibration: smaller bank, same buffers
        tiles = rng.integers(0, 256, (2, r, r, 3), dtype=np.uint8)
        np.testing.assert_allclose(runner.run(tiles)[0], reference(tiles, bank[:40])[0], atol=1e-5)
    finally:
        runner.close()


@needs_gpu
def test_onnxruntime_cuda_ep_matches_cpu(tiny_expert_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    from edge.config.expert import OnnxRuntimeExpertConfig
    from edge.expert import load_expert

    gpu = load_expert(OnnxRuntimeExpertConfig(model=tiny_expert_dir / "expert.onnx", providers=["cuda", "cpu"]))
    if gpu.providers[0] != "CUDAExecutionProvider":
        pytest.skip(f"CUDA EP requested but ONNX Runtime fell back to {gpu.providers} (CUDA/cuDNN libraries missing?)")
    cpu = load_expert(OnnxRuntimeExpertConfig(model=tiny_expert_dir / "expert.onnx", providers=["cpu"]))
    rng = np.random.default_rng(0)
    r = gpu.resolution
    bank = rng.standard_normal((500, gpu.feature_dim)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    tiles = rng.integers(0, 256, (4, r, r, 3), dtype=np.uint8)
    gpu.set_bank(bank)
    cpu.set_bank(bank)
    d_gpu, f_gpu = gpu.run(tiles)
    d_cpu, f_cpu = cpu.run(tiles)
    assert np.max(np.abs(d_gpu - d_cpu)) < 1e-3  # TF32/cuDNN kernels differ from MLAS in the last bits
    assert np.max(np.abs(f_gpu - f_cpu)) < 1e-3


@needs_gpu
@pytest.mark.skipif(not _has("tensorrt"), reason="tensorrt is not installed (JetPack / NVIDIA's index only)")
def test_real_engine_parity_and_verdicts(tiny_expert_dir: Path, tmp_path: Path) -> None:
    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.config.expert import TensorRTExpertConfig
    from edge.inspector import Inspector
    from export.tensorrt import EngineProfile, build_engine
    from tests.fixtures.expert import synthetic_frames, write_recipe

    engine_dir = tmp_path / "engines" / "tiny"
    shutil.copytree(tiny_expert_dir, engine_dir)
    manifest = build_engine(engine_dir / "expert.onnx", engine_dir, EngineProfile(tiles=(1, 8, 8), bank=(1, 1024, 4096)))
    parity = manifest["tensorrt"]["parity"]
    assert parity["distances_max_abs_error"] <= 2e-2
    assert parity["ranking_preserved"]

    ort_recipe = load_recipe(write_recipe(tmp_path, engine_dir))
    ort = Inspector.from_recipe(ort_recipe, load_bank=False)
    size = ort.expert.resolution
    bank = build_bank(ort.expert, [f.image for f in synthetic_frames(4, defect=None, width=size, height=size)], ort_recipe, progress=False)
    ort.set_bank(bank)
    trt_recipe = ort_recipe.model_copy(update={"expert": TensorRTExpertConfig(engine=engine_dir / "expert.plan", max_tiles=8, max_bank=4096)})
    trt = Inspector.from_recipe(trt_recipe, load_bank=False)
    trt.set_bank(bank)
    for frame in synthetic_frames(12, seed=11, width=size, height=size):
        a, b = ort.inspect(frame.image), trt.inspect(frame.image)
        assert a.verdict == b.verdict

"""GPU check of the FP16 expert on the ORT CUDA execution provider (marked ``gpu``; skips with its reason elsewhere).

The CPU-side tests (tests/test_precision_experts.py) check the FP16 graph's numbers on ONNX Runtime's CPU
provider; this one checks that it really runs on the GPU through the normal runtime path (IOBinding with
the bank on the device) and that its verdicts agree with the FP32 expert there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bank import build_bank
from edge.config import load_recipe
from edge.inspector import Inspector
from tests.fixtures.expert import synthetic_frames, write_recipe

pytestmark = pytest.mark.gpu


def _cuda_reason() -> str:
    """'' when ORT can use an NVIDIA GPU here, else why not (cudaGetDeviceCount returns an error code, never raises)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        cudart = None
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            return f"no CUDA device (cudaGetDeviceCount error {int(err)})"
    else:
        try:
            import torch
        except ImportError:
            return "no GPU probe available (neither cuda-python nor torch installed)"
        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return ""


@pytest.mark.skipif(bool(_cuda_reason()), reason=_cuda_reason() or "cuda present")
def test_fp16_expert_runs_on_cuda_and_agrees_with_fp32(tmp_path: Path, precision_experts: dict[str, Path]) -> None:
    parts = synthetic_frames(40, seed=3, defect_rate=0.5)
    verdicts = {}
    for precision in ("fp32", "fp16"):
        folder = tmp_path / precision
        folder.mkdir()
        recipe = load_recipe(write_recipe(folder, precision_experts[precision],
                                          overrides={"expert": {"providers": ["cuda"]}}))
        inspector = Inspector.from_recipe(recipe, load_bank=False)
        if inspector.expert.providers[0] != "CUDAExecutionProvider":
            pytest.skip(f"ONNX Runtime fell back to {inspector.expert.providers[0]} (CUDA/cuDNN libraries missing)")
        good = synthetic_frames(12, defect=None, start=1000)
        inspector.set_bank(build_bank(inspector.expert, (f.image for f in good), recipe, progress=False))
        verdicts[precision] = [inspector.inspect(f.image).verdict for f in parts]
    agree = sum(a == b for a, b in zip(verdicts["fp32"], verdicts["fp16"])) / len(parts)
    assert agree >= 0.98, f"FP16 on CUDA agrees with FP32 on {agree:.1%} of parts"

"""GPU benchmark of the region-expert routes: TensorRT FP16 vs ORT CUDA EP vs ORT TensorRT EP vs PyTorch eager.

Architectures: DINOv2 ViT-S/14 and ViT-B/14 with random weights (same graph as
the product, exported with ``iad-export dinov2``'s own code), at 224 and 448 px,
tile batch 1 and 8, bank of 4096 rows (a 16-shot bank at 224 px). Each route
times the *runtime call the lane makes* (``expert.run(tiles)``: host tiles in,
host distances + features out; bank resident on the device), median of
``--iters`` runs after warm-up, and prints a table plus ratios against PyTorch
eager FP32 measured in the same run. A route that cannot run here prints
``unavailable: <reason>`` and the rest goes on.

    python bench/engines.py                       # everything
    python bench/engines.py --archs vits14 --resolutions 224 --batches 1 8
    python bench/engines.py --json out/engines.json

Not a test: figures depend on the GPU, clocks and drivers; never gate CI on them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCHS = {"vits14": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
         "vitb14": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12)}
ROUTES = ("torch-eager-fp32", "torch-eager-fp16", "ort-cuda", "ort-tensorrt-ep", "tensorrt-fp16")


class Unavailable(Exception):
    """A route that cannot run on this machine (the reason is printed)."""


def make_checkpoint(arch: str, folder: Path, seed: int = 0) -> Path:
    """A Hugging Face DINOv2 folder with random weights of the real architecture."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(patch_size=14, image_size=518, mlp_ratio=4, layerscale_value=1.0, **ARCHS[arch])
    Dinov2Model(config).eval().save_pretrained(str(folder))
    return folder


def export_onnx(checkpoint: Path, resolution: int, out: Path) -> Path:
    from export.dinov2 import export_dinov2

    export_dinov2(out, checkpoint=checkpoint, resolution=resolution, tolerance=1e-3)
    return out / "expert.onnx"


def time_call(fn: Callable[[], Any], iters: int, warmup: int, sync: Callable[[], None] = lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def torch_route(checkpoint: Path, resolution: int, half: bool) -> tuple[Callable[[np.ndarray, np.ndarray], Callable[[], Any]], Callable[[], None]]:
    try:
        import torch
    except ImportError as exc:
        raise Unavailable("torch is not installed") from exc
    if not torch.cuda.is_available():
        raise Unavailable("torch sees no CUDA device")
    from export.checkpoint import load_backbone
    from export.graph import RegionExpertGraph

    backbone = load_backbone(checkpoint=checkpoint)
    graph = RegionExpertGraph(backbone.model, resolution, backbone.patch_size, backbone.num_register_tokens).cuda().eval()

    def prepare(tiles: np.ndarray, bank: np.ndarray) -> Callable[[], Any]:
        dev_bank = torch.from_numpy(bank).cuda()

        def call() -> Any:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=half):
                d, f = graph(torch.from_numpy(tiles).cuda(non_blocking=False), dev_bank)
                return d.float().cpu().numpy(), f.float().cpu().numpy()

        return call

    return prepare, torch.cuda.synchronize


def ort_route(onnx_path: Path, providers: list[str], cache: Path) -> Callable[[np.ndarray, np.ndarray], Callable[[], Any]]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise Unavailable("onnxruntime is not installed") from exc
    wanted = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[providers[0]]
    if wanted not in ort.get_available_providers():
        raise Unavailable(f"this onnxruntime build ({ort.__version__}) has no {wanted} (install onnxruntime-gpu)")
    from edge.config.expert import OnnxRuntimeExpertConfig
    from edge.expert import load_expert

    expert = load_expert(OnnxRuntimeExpertConfig(model=onnx_path, providers=providers, trt_cache_dir=cache, trt_fp16=True))
    if expert.providers[0] != wanted:
        raise Unavailable(f"{wanted} requested but the session runs on {expert.providers} (CUDA/cuDNN/TensorRT libraries missing?)")

    def prepare(tiles: np.ndarray, bank: np.ndarray) -> Callable[[], Any]:
        expert.set_bank(bank)
        return lambda: expert.run(tiles)

    return prepare


def trt_route(onnx_path: Path, out: Path, max_tiles: int, bank_rows: int) -> Callable[[np.ndarray, np.ndarray], Callable[[], Any]]:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise Unavailable("tensorrt is not installed (JetPack / NVIDIA's index only)") from exc
    from edge.expert.tensorrt import open_runner
    from export.tensorrt import EngineProfile, build_engine

    build_engine(onnx_path, out, EngineProfile(tiles=(1, max_tiles, max_tiles), bank=(1, bank_rows, bank_rows)), parity=False)
    runner = open_runner(out / "expert.plan")

    def prepare(tiles: np.ndarray, bank: np.ndarray) -> Callable[[], Any]:
        runner.set_bank(bank)
        return lambda: runner.run(tiles)

    return prepare


def gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "no CUDA device"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 448])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    parser.add_argument("--bank", type=int, default=4096, help="Bank rows (default 4096).")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args(argv)

    print(f"GPU: {gpu_name()} | host: {platform.node()} ({platform.machine()}), Python {platform.python_version()}")
    rows: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        work = Path(tmp)
        for arch in args.archs:
            checkpoint = make_checkpoint(arch, work / f"{arch}-hf")
            for resolution in args.resolutions:
                onnx_path = export_onnx(checkpoint, resolution, work / f"{arch}-{resolution}")
                dim = ARCHS[arch]["hidden_size"]
                bank = rng.standard_normal((args.bank, dim)).astype(np.float32)
                bank /= np.linalg.norm(bank, axis=1, keepdims=True)
                builders: dict[str, Callable[[], Any]] = {
                    "torch-eager-fp32": lambda: torch_route(checkpoint, resolution, half=False),
                    "torch-eager-fp16": lambda: torch_route(checkpoint, resolution, half=True),
                    "ort-cuda": lambda: (ort_route(onnx_path, ["cuda"], work / "ort-cache"), _cuda_sync()),
                    "ort-tensorrt-ep": lambda: (ort_route(onnx_path, ["tensorrt", "cuda"], work / f"trt-ep-{arch}-{resolution}"), _cuda_sync()),
                    "tensorrt-fp16": lambda: (trt_route(onnx_path, work / f"trt-{arch}-{resolution}", max(args.batches), args.bank), _cuda_sync()),
                }
                for route in args.routes:
                    try:
                        prepare, sync = builders[route]()
                    except Unavailable as exc:
                        notes[route] = str(exc)
                        continue
                    except Exception as exc:  # a broken route must not stop the others
                        notes[route] = f"{type(exc).__name__}: {exc}"
                        continue
                    for batch in args.batches:
                        tiles = rng.integers(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8)
                        call = prepare(tiles, bank)
                        ms = time_call(call, args.iters, args.warmup, sync)
                        rows.append({"arch": arch, "resolution": resolution, "batch": batch, "route": route,
                                     "median_ms": ms, "ms_per_tile": ms / batch})
                        print(f"  {arch} {resolution}px b{batch} {route:17s} {ms:8.2f} ms", flush=True)
    _print_table(rows, notes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"gpu": gpu_name(), "bank": args.bank, "iters": args.iters, "rows": rows, "unavailable": notes}, indent=2))
    return 0


def _cuda_sync() -> Callable[[], None]:
    """Routes that copy results back to host are synchronous already; nothing extra to wait for."""
    return lambda: None


def _print_table(rows: list[dict[str, Any]], notes: dict[str, str]) -> None:
    print()
    print("| arch | res | batch | route | median ms | ms/tile | vs torch fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = {(r["arch"], r["resolution"], r["batch"]): r["median_ms"] for r in rows if r["route"] == "torch-eager-fp32"}
    for r in rows:
        ref = base.get((r["arch"], r["resolution"], r["batch"]))
        ratio = f"{ref / r['median_ms']:.2f}x faster" if ref else "n/a"
        print(f"| {r['arch']} | {r['resolution']} | {r['batch']} | {r['route']} | {r['median_ms']:.2f} | {r['ms_per_tile']:.2f} | {ratio} |")
    for route in ROUTES:
        if route in notes:
            print(f"{route}: unavailable: {notes[route]}")


if __name__ == "__main__":
    sys.exit(main())

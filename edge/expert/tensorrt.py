"""Native TensorRT backend of the region expert (``expert.backend: tensorrt``).

Why native TensorRT beside ORT's TensorRT execution provider: on a Jetson the
plan is built once offline (``iad-export dinov2 --engine``) with FP16 and the
numerically sensitive layers pinned to FP32, its parity recorded in the
manifest, and the runtime does the minimum per frame: one host->device copy of
the tiles into a pinned staging buffer, ``execute_async_v3`` on one stream,
two device->host copies. Everything else is done once:

* device buffers sized for the engine profile's maximum (tiles, bank, outputs)
  are allocated at load, never per frame;
* tensor addresses are bound to the execution context once;
* the bank is uploaded once per :meth:`set_bank` (recalibration), never per frame.

``tensorrt`` and the CUDA bindings (pycuda, else cuda-python) are imported
only here, when the recipe selects this backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BadFrameError, BankError, ModelLoadError
from edge.expert.cuda_memory import CudaMemory, open_cuda
from edge.expert.manifest import load_manifest
from edge.expert.trt_check import check_bank_shape, check_engine_manifest, rebuild_hint

log = logging.getLogger(__name__)

INPUTS = ("tiles", "bank")
OUTPUTS = ("distances", "features")


def import_tensorrt() -> Any:
    """``import tensorrt`` with an actionable error (it ships with JetPack; pip wheels need NVIDIA's index)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ModelLoadError(
            "the TensorRT backend needs the `tensorrt` Python package (JetPack ships it; on x86 install it from "
            "NVIDIA's index), or use `expert.backend: onnxruntime` with `providers: [tensorrt, cuda, cpu]`"
        ) from exc
    return trt


class TrtEngineRunner:
    """A deserialized plan with its context, stream and preallocated buffers.

    Used by :class:`TensorRTExpert` (the lane), by the export step's parity
    check and by ``bench/engines.py``. Shapes follow the graph contract:
    ``tiles`` uint8 [B, R, R, 3], ``bank`` float32 [N, D] -> ``distances``
    float32 [B, g, g], ``features`` float32 [B, g, g, D].
    """

    def __init__(self, plan: bytes, trt: Any, cuda: CudaMemory, source: str = "engine") -> None:
        self.trt = trt
        self.cuda = cuda
        self.source = source
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ModelLoadError(f"{source}: TensorRT could not deserialize the plan (corrupt, truncated, or built by another TensorRT version)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        missing = [n for n in INPUTS + OUTPUTS if n not in names]
        if missing:
            raise ModelLoadError(f"{source}: engine lacks tensor(s) {missing} (has {names}); it was not built from an iad-expert graph")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ModelLoadError(f"{source}: TensorRT could not create an execution context (out of GPU memory?)")

        tiles_min, _, tiles_max = (tuple(int(v) for v in s) for s in self.engine.get_tensor_profile_shape("tiles", 0))
        bank_min, _, bank_max = (tuple(int(v) for v in s) for s in self.engine.get_tensor_profile_shape("bank", 0))
        self.resolution = int(tiles_max[1])
        self.feature_dim = int(bank_max[1])
        self.max_tiles = int(tiles_max[0])
        self.bank_range = (int(bank_min[0]), int(bank_max[0]))
        self.tiles_range = (int(tiles_min[0]), self.max_tiles)
        out_shape = tuple(int(v) for v in self.engine.get_tensor_shape("distances"))
        self.grid = int(out_shape[-1]) if out_shape[-1] > 0 else self.resolution // 14

        b, r, g, d = self.max_tiles, self.resolution, self.grid, self.feature_dim
        self.stream = cuda.stream()
        # Device buffers for the profile's maximum shapes: allocated once, bound once.
        self.nbytes = {
            "tiles": b * r * r * 3,
            "bank": self.bank_range[1] * d * 4,
            "distances": b * g * g * 4,
            "features": b * g * g * d * 4,
        }
        self.device: dict[str, int] = {}
        for name, size in self.nbytes.items():
            self.device[name] = cuda.alloc(size)
            if not self.context.set_tensor_address(name, self.device[name]):
                raise ModelLoadError(f"{source}: set_tensor_address({name}) refused")
        # Pinned host staging buffers: async copies need page-locked memory.
        self.host_tiles = cuda.pinned((b, r, r, 3), np.uint8)
        self.host_distances = cuda.pinned((b, g, g), np.float32)
        self.host_features = cuda.pinned((b, g, g, d), np.float32)
        self.bank_rows = 0
        self.bank_uploads = 0

    def set_bank(self, bank: np.ndarray) -> None:
        """Upload the bank once; every later :meth:`run` reuses the device copy."""
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.cuda.htod(self.device["bank"], bank)
        if not self.context.set_input_shape("bank", tuple(bank.shape)):
            raise BankError(f"{self.source}: TensorRT refused bank shape {tuple(bank.shape)} (profile rows {self.bank_range})")
        self.bank_rows = int(bank.shape[0])
        self.bank_uploads += 1

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run up to ``max_tiles`` tiles per launch (larger batches are split) and return fresh arrays."""
        if self.bank_rows == 0:
            raise BankError("no memory bank installed: run `iad-edge calibrate` first")
        outs_d, outs_f = [], []
        for start in range(0, tiles.shape[0], self.max_tiles):
            chunk = tiles[start : start + self.max_tiles]
            d, f = self._run_chunk(chunk)
            outs_d.append(d)
            outs_f.append(f)
        if len(outs_d) == 1:
            return outs_d[0], outs_f[0]
        return np.concatenate(outs_d), np.concatenate(outs_f)

    def _run_chunk(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = int(tiles.shape[0])
        self.host_tiles[:n] = tiles
        self.cuda.htod_async(self.device["tiles"], self.host_tiles[:n], self.stream)
        if not self.context.set_input_shape("tiles", (n, self.resolution, self.resolution, 3)):
            raise BadFrameError(f"{self.source}: TensorRT refused a batch of {n} tiles (profile {self.tiles_range})")
        if not self.context.execute_async_v3(self.stream):
            raise ModelLoadError(f"{self.source}: TensorRT execute_async_v3 failed")
        self.cuda.dtoh_async(self.host_distances[:n], self.device["distances"], self.stream)
        self.cuda.dtoh_async(self.host_features[:n], self.device["features"], self.stream)
        self.cuda.synchronize(self.stream)
        # Copies: the pinned buffers are overwritten by the next call.
        return self.host_distances[:n].copy(), self.host_features[:n].copy()

    def close(self) -> None:
        for ptr in self.device.values():
            self.cuda.free(ptr)
        self.device.clear()
        for array in (self.host_tiles, self.host_distances, self.host_features):
            self.cuda.free_pinned(array)
        self.context = None
        self.engine = None


class TensorRTExpert:
    """The region expert as a TensorRT plan; selected by ``expert.backend: tensorrt``."""

    def __init__(self, cfg: Any) -> None:
        engine_path = Path(cfg.engine)
        # Size + sha256 against the manifest first: a truncated plan never reaches TensorRT.
        self.manifest = load_manifest(engine_path)
        self.resolution = int(self.manifest["resolution"])
        self.patch_size = int(self.manifest["patch_size"])
        self.feature_dim = int(self.manifest["feature_dim"])
        trt = import_tensorrt()
        cuda = open_cuda()
        self.section = check_engine_manifest(
            self.manifest,
            engine_path,
            trt_version=trt.__version__,
            compute_capability=cuda.compute_capability(),
            max_tiles=cfg.max_tiles,
            max_bank=cfg.max_bank,
        )
        self.engine_path = engine_path
        self._runner = TrtEngineRunner(engine_path.read_bytes(), trt, cuda, source=str(engine_path))
        if (self._runner.resolution, self._runner.feature_dim) != (self.resolution, self.feature_dim):
            raise ModelLoadError(
                f"{engine_path}: the plan takes {self._runner.resolution}px tiles and D={self._runner.feature_dim}, "
                f"its manifest says {self.resolution}px and D={self.feature_dim}; {rebuild_hint(self.manifest, engine_path)}"
            )
        self.providers = [f"TensorRT {trt.__version__} ({cuda.name}, {cuda.device_name()})"]
        log.info("region expert %s on %s", self.manifest.get("architecture", "?"), self.providers[0])
        self._warm_up()

    def _warm_up(self) -> None:
        """One run at load (with a one-row bank) so the first frame pays no lazy initialisation."""
        bank = np.zeros((max(1, self._runner.bank_range[0]), self.feature_dim), dtype=np.float32)
        bank[:, 0] = 1.0
        self._runner.set_bank(bank)
        self._runner.run(np.zeros((1, self.resolution, self.resolution, 3), dtype=np.uint8))
        self._runner.bank_rows = 0  # the warm-up bank is not a calibration
        self._runner.bank_uploads = 0

    def set_bank(self, bank: np.ndarray) -> None:
        check_bank_shape(self.section, self.feature_dim, tuple(bank.shape), self.engine_path)
        self._runner.set_bank(bank)

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (self.resolution, self.resolution, 3):
            raise BadFrameError(
                f"tiles must be uint8 [B, {self.resolution}, {self.resolution}, 3] RGB (got {tiles.dtype} {tuple(tiles.shape)})"
            )
        return self._runner.run(tiles)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None  # type: ignore[assignment]


def open_runner(plan_path: Path, cuda: CudaMemory | None = None) -> TrtEngineRunner:
    """A runner for a plan file without the recipe-level checks (export parity, benchmarks)."""
    trt = import_tensorrt()
    return TrtEngineRunner(Path(plan_path).read_bytes(), trt, cuda or open_cuda(), source=str(plan_path))

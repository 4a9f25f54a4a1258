"""The few CUDA calls the TensorRT backend needs, over pycuda or cuda-python.

Why an adapter: the target (Jetson) usually has pycuda, while pip-only
machines get NVIDIA's ``cuda-python`` (``cuda.bindings.runtime``) far more
easily; the TensorRT backend should not care. Both give the same small
surface: device allocations, page-locked host arrays, one stream, async
copies, and the device's name and compute capability (for the manifest check).

Nothing here is imported unless the TensorRT backend (or the export step's
engine build) is chosen.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from edge.errors import ModelLoadError


class CudaMemory(Protocol):
    """What the TensorRT backend needs from CUDA. Pointers and the stream are plain ints."""

    name: str  # "pycuda" or "cuda-python"

    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray: ...
    def free_pinned(self, array: np.ndarray) -> None: ...
    def stream(self) -> int: ...
    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None: ...
    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None: ...
    def htod(self, dst: int, src: np.ndarray) -> None: ...
    def synchronize(self, stream: int) -> None: ...
    def compute_capability(self) -> str: ...
    def device_name(self) -> str: ...


class PycudaMemory:
    """pycuda with the device's primary context (shared with ORT/other CUDA users in the process).

    A CUDA context is current *per thread*: ``pycuda.autoprimaryctx`` makes it
    current only on the thread that imports it, while the lane loads the expert
    on one thread (start-up or the reload thread) and runs frames on
    ``lane-inspect``. So this class retains the primary context once and every
    call pushes it on the calling thread and pops it after (a few microseconds),
    which works from any thread and leaves no thread holding it.
    """

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self._cuda = cuda
        self._device = cuda.Device(int(os.environ.get("CUDA_DEVICE", "0")))
        self._context = self._device.retain_primary_context()
        self._allocations: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    @contextmanager
    def _current(self) -> Iterator[None]:
        """The primary context current on this thread for the duration of one call."""
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def alloc(self, nbytes: int) -> int:
        with self._current():
            allocation = self._cuda.mem_alloc(max(1, int(nbytes)))
        ptr = int(allocation)
        self._allocations[ptr] = allocation  # keep the owner alive until free()
        return ptr

    def free(self, ptr: int) -> None:
        allocation = self._allocations.pop(ptr, None)
        if allocation is not None:
            with self._current():
                allocation.free()

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        with self._current():
            return self._cuda.pagelocked_empty(shape, dtype)

    def free_pinned(self, array: np.ndarray) -> None:
        base = getattr(array, "base", None)
        if base is not None and hasattr(base, "free"):
            with self._current():
                base.free()

    def stream(self) -> int:
        with self._current():
            stream = self._cuda.Stream()
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        with self._current():
            self._cuda.memcpy_htod_async(dst, src, self._streams[stream])

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        with self._current():
            self._cuda.memcpy_dtoh_async(dst, src, self._streams[stream])

    def htod(self, dst: int, src: np.ndarray) -> None:
        with self._current():
            self._cuda.memcpy_htod(dst, src)

    def synchronize(self, stream: int) -> None:
        with self._current():
            self._streams[stream].synchronize()

    def compute_capability(self) -> str:
        major, minor = self._device.compute_capability()
        return f"{major}.{minor}"

    def device_name(self) -> str:
        return str(self._device.name())


class CudaPythonMemory:
    """NVIDIA's cuda-python runtime bindings (``cuda.bindings.runtime``; ``cuda.cudart`` on old releases).

    The runtime API binds the device's primary context on whichever thread
    calls it, so loading on one thread and running on another needs nothing
    extra here (unlike pycuda's driver API).

    cuda-python returns ``(error, value...)`` tuples instead of raising; every
    call goes through :meth:`_check` so a failure becomes a clear error.
    """

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:  # cuda-python < 12.6
            from cuda import cudart  # type: ignore[no-redef]
        self._rt = cudart
        (count,) = self._check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if count < 1:
            raise ModelLoadError("cuda-python sees no CUDA device")
        (self._device,) = self._check(cudart.cudaGetDevice(), "cudaGetDevice")
        (self._props,) = self._check(cudart.cudaGetDeviceProperties(self._device), "cudaGetDeviceProperties")
        self._pinned: dict[int, int] = {}  # id(array) -> host pointer

    def _check(self, result: Any, what: str) -> tuple[Any, ...]:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, text = self._rt.cudaGetErrorString(err)
            raise ModelLoadError(f"CUDA {what} failed: {text.decode() if isinstance(text, bytes) else text} ({int(err)})")
        return tuple(values)

    def alloc(self, nbytes: int) -> int:
        (ptr,) = self._check(self._rt.cudaMalloc(max(1, int(nbytes))), "cudaMalloc")
        return int(ptr)

    def free(self, ptr: int) -> None:
        self._check(self._rt.cudaFree(ptr), "cudaFree")

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
        (host,) = self._check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost")
        raw = (ctypes.c_uint8 * nbytes).from_address(int(host))
        array = np.frombuffer(raw, dtype=np.uint8, count=int(np.prod(shape)) * dtype.itemsize).view(dtype).reshape(shape)
        self._pinned[id(array)] = int(host)
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        host = self._pinned.pop(id(array), None)
        if host is not None:
            self._check(self._rt.cudaFreeHost(host), "cudaFreeHost")

    def stream(self) -> int:
        (stream,) = self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        return int(stream)

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync(H2D)")

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream), "cudaMemcpyAsync(D2H)")

    def htod(self, dst: int, src: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpy(dst, src.ctypes.data, src.nbytes, kind), "cudaMemcpy(H2D)")

    def synchronize(self, stream: int) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def compute_capability(self) -> str:
        return f"{self._props.major}.{self._props.minor}"

    def device_name(self) -> str:
        name = self._props.name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()


def open_cuda(prefer: str = "auto") -> CudaMemory:
    """pycuda if importable (JetPack ships it), else cuda-python; ModelLoadError when neither works."""
    order = {"auto": ("pycuda", "cuda-python"), "pycuda": ("pycuda",), "cuda-python": ("cuda-python",)}[prefer]
    reasons = []
    for name in order:
        try:
            return PycudaMemory() if name == "pycuda" else CudaPythonMemory()
        except ImportError as exc:
            reasons.append(f"{name}: not installed ({exc.name})")
        except ModelLoadError as exc:
            reasons.append(f"{name}: {exc}")
        except Exception as exc:  # pycuda raises its own types (no driver, no device
            reasons.append(f"{name}: {type(exc).__name__}: {exc}")
    raise ModelLoadError("no usable CUDA for the TensorRT backend (" + "; ".join(reasons) + "); install pycuda or cuda-python on a machine with an NVIDIA GPU")

"""TEST DOUBLE of the few ``tensorrt`` and ``pycuda`` calls iad-edge makes. This is NOT TensorRT.

TensorRT and pycuda cannot be installed on our CI or development machines, so
the engine-build logic (``export/tensorrt.py``) and the runtime backend
(``edge/expert/tensorrt.py``) are tested against this stand-in, injected with
``sys.modules`` (see :func:`install`). It implements only the calls our code
makes, with the signatures of NVIDIA's documented Python API, and it records
every call so tests can assert *what* our code asked for: network flags,
builder flags, optimisation-profile shapes, per-layer precisions, timing-cache
use, buffer sizes, tensor addresses, bank uploads, ``execute_async_v3`` streams.

To make runtime tests meaningful, a "plan" built here embeds the ONNX graph it
was parsed from and the fake execution context runs it with ONNX Runtime (CPU)
on the bytes found at the bound device addresses of a fake device memory. A
wrong buffer size, a missing copy or a stale shape therefore gives wrong
numbers or an explicit error, as it would on a GPU.

It also models CUDA's per-thread *current context*: every pycuda driver call
(allocations, copies, streams, pinned memory) fails with pycuda's "invalid
device context" unless a context is current on the calling thread, and
``import pycuda.autoprimaryctx`` makes the primary context current only on the
importing thread, exactly like pycuda. A backend that loads on one thread and
runs frames on another (the lane's ``lane-inspect``) fails here as it would on
a Jetson. TensorRT's own calls use the CUDA runtime API, which binds the
primary context on any thread, so they do not check. What it cannot show: real
TensorRT kernels, FP16 numerics of TensorRT, and real CUDA timing; those are
covered by the ``gpu``-marked tests on a target.
"""

from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import json
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PLAN_MAGIC = b"FAKE-TRT-PLAN\0"


# --- the recorded world -------------------------------------------------------------------------


@dataclass
class World:
    """Everything the fake modules recorded; one per test (see :func:`install`)."""

    version: str = "10.3.0"
    fp16_flag: bool = True  # False imitates TensorRT 11 (BuilderFlag.FP16 removed)
    compute_capability: tuple[int, int] = (8, 7)
    device_name: str = "Fake Orin (test double)"
    fail_build: bool = False
    output_noise: float = 0.0  # added to distances by the fake engine (parity-failure tests)
    monitor_steps: list[bool] = field(default_factory=list)  # what our progress monitor answered
    # GPU tests: a real CudaMemory (edge.expert.cuda_memory) whose device pointers the fake engine
    # reads and writes, so the backend's buffer handling runs on real CUDA with only TensorRT faked.
    real_cuda: Any = None
    builders: list[Builder] = field(default_factory=list)
    contexts: list[ExecutionContext] = field(default_factory=list)
    memory: dict[int, bytearray] = field(default_factory=dict)
    freed: list[int] = field(default_factory=list)
    allocations: list[int] = field(default_factory=list)  # sizes in order of mem_alloc calls
    pinned: list[tuple[tuple[int, ...], np.dtype]] = field(default_factory=list)
    copies: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, device ptr, nbytes)
    streams: list[int] = field(default_factory=list)
    pushes: int = 0  # Context.push() calls (per-thread current-context model)
    no_context_errors: list[str] = field(default_factory=list)  # pycuda calls made without a current context
    _threads: threading.local = field(default_factory=threading.local)  # per-thread context stack
    _primary: Any = None
    _next_ptr: int = 0x10000

    # per-thread current CUDA context ---------------------------------------------------------
    def context_stack(self) -> list[Context]:
        stack = getattr(self._threads, "stack", None)
        if stack is None:
            stack = self._threads.stack = []
        return stack

    def current_context(self) -> Context | None:
        stack = self.context_stack()
        return stack[-1] if stack else None

    def require_context(self, call: str) -> None:
        """pycuda raises LogicError "<call> failed: invalid device context" on a thread with no current context."""
        if self.real_cuda is None and self.current_context() is None:
            thread = threading.current_thread().name
            self.no_context_errors.append(f"{call} on {thread}")
            raise LogicError(f"{call} failed: invalid device context (fake pycuda: no CUDA context is current on thread {thread!r})")

    # device memory ---------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        """Disjoint fake device addresses, 64 KiB aligned, one bytearray each."""
        ptr = self._next_ptr
        self._next_ptr += (nbytes // 0x10000 + 2) * 0x10000
        self.memory[ptr] = bytearray(nbytes)
        self.allocations.append(nbytes)
        return ptr

    def write(self, ptr: int, data: bytes) -> None:
        if self.real_cuda is not None:
            self.real_cuda.htod(ptr, np.frombuffer(data, np.uint8))
            return
        buf = self._buffer(ptr)
        if len(data) > len(buf):
            raise ValueError(f"fake CUDA: copy of {len(data)} bytes into a {len(buf)}-byte allocation")
        buf[: len(data)] = data

    def read(self, ptr: int, nbytes: int) -> bytes:
        if self.real_cuda is not None:
            host = np.empty(nbytes, np.uint8)
            stream = self.real_cuda.stream()
            self.real_cuda.dtoh_async(host, ptr, stream)
            self.real_cuda.synchronize(stream)
            return host.tobytes()
        buf = self._buffer(ptr)
        if nbytes > len(buf):
            raise ValueError(f"fake CUDA: read of {nbytes} bytes from a {len(buf)}-byte allocation")
        return bytes(buf[:nbytes])

    def _buffer(self, ptr: int) -> bytearray:
        if ptr not in self.memory:
            raise ValueError(f"fake CUDA: {ptr:#x} is not a live device allocation")
        return self.memory[ptr]

    # what tests look at ----------------------------------------------------------------------
    @property
    def builder(self) -> Builder:
        return self.builders[-1]

    @property
    def context(self) -> ExecutionContext:
        return self.contexts[-1]


# --- tensorrt -----------------------------------------------------------------------------------


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"
    INT32 = "int32"
    INT64 = "int64"
    BOOL = "bool"
    UINT8 = "uint8"
    INT8 = "int8"


class LayerType(enum.Enum):
    CONVOLUTION = 1
    MATRIX_MULTIPLY = 2
    ELEMENTWISE = 3
    NORMALIZATION = 4
    SOFTMAX = 5
    REDUCE = 6
    SHUFFLE = 7
    CONSTANT = 8
    SHAPE = 9
    CAST = 10
    RESIZE = 11
    UNARY = 12
    GATHER = 13
    CONCATENATION = 14
    SLICE = 15
    SELECT = 16
    IDENTITY = 17
    ACTIVATION = 18
    FILL = 19


_ONNX_TO_LAYER = {
    "Conv": LayerType.CONVOLUTION, "MatMul": LayerType.MATRIX_MULTIPLY, "Gemm": LayerType.MATRIX_MULTIPLY,
    "Add": LayerType.ELEMENTWISE, "Sub": LayerType.ELEMENTWISE, "Mul": LayerType.ELEMENTWISE,
    "Div": LayerType.ELEMENTWISE, "Pow": LayerType.ELEMENTWISE, "Equal": LayerType.ELEMENTWISE,
    "LayerNormalization": LayerType.NORMALIZATION, "Softmax": LayerType.SOFTMAX,
    "ReduceMax": LayerType.REDUCE, "ReduceL2": LayerType.REDUCE, "ReduceMean": LayerType.REDUCE,
    "Reshape": LayerType.SHUFFLE, "Transpose": LayerType.SHUFFLE, "Unsqueeze": LayerType.SHUFFLE,
    "Constant": LayerType.CONSTANT, "Shape": LayerType.SHAPE, "Cast": LayerType.CAST, "Resize": LayerType.RESIZE,
    "Erf": LayerType.UNARY, "Sqrt": LayerType.UNARY, "Gather": LayerType.GATHER, "Concat": LayerType.CONCATENATION,
    "Slice": LayerType.SLICE, "Where": LayerType.SELECT, "Identity": LayerType.IDENTITY, "Clip": LayerType.ACTIVATION,
    "Expand": LayerType.SLICE, "ConstantOfShape": LayerType.FILL,
}
_ONNX_ELEM_TO_DTYPE = {1: DataType.FLOAT, 10: DataType.HALF, 6: DataType.INT32, 7: DataType.INT64, 9: DataType.BOOL, 2: DataType.UINT8, 3: DataType.INT8}


class Logger:
    WARNING = 2
    INFO = 3
    ERROR = 1

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


@dataclass
class Tensor:
    name: str
    dtype: DataType


class Layer:
    def __init__(self, name: str, layer_type: LayerType, outputs: list[Tensor]) -> None:
        self.name = name
        self.type = layer_type
        self._outputs = outputs
        self._precision: DataType | None = None
        self.output_types: dict[int, DataType] = {}

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_output(self, index: int) -> Tensor:
        return self._outputs[index]

    @property
    def precision(self) -> DataType | None:
        return self._precision

    @precision.setter
    def precision(self, value: DataType) -> None:
        self._precision = value

    @property
    def precision_is_set(self) -> bool:
        return self._precision is not None

    def set_output_type(self, index: int, dtype: DataType) -> None:
        if index >= len(self._outputs):
            raise IndexError(f"layer {self.name} has {len(self._outputs)} outputs")
        self.output_types[index] = dtype


class Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.layers: list[Layer] = []
        self.onnx_path: str | None = None
        self.onnx_bytes: bytes = b""
        self.grid: int = 0

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> Layer:
        return self.layers[index]


class OnnxParser:
    def __init__(self, network: Network, logger: Logger) -> None:
        self.network = network
        self._errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> str:
        return self._errors[index]

    def parse_from_file(self, path: str) -> bool:
        import onnx

        try:
            model = onnx.load(path)
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception as exc:  # a parser reports, it does not raise
            self._errors.append(f"fake parser: cannot read {path}: {exc}")
            return False
        types_by_name = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
        for node in model.graph.node:
            outputs = []
            for out in node.output:
                elem = types_by_name.get(out)
                if node.op_type == "Constant":
                    elem = node.attribute[0].t.data_type if node.attribute and node.attribute[0].t.data_type else elem
                outputs.append(Tensor(out, _ONNX_ELEM_TO_DTYPE.get(elem or 1, DataType.FLOAT)))
            self.network.layers.append(Layer(node.name, _ONNX_TO_LAYER.get(node.op_type, LayerType.ELEMENTWISE), outputs))
        grid = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
        self.network.grid = int(grid[-1])
        self.network.onnx_path = path
        self.network.onnx_bytes = Path(path).read_bytes()
        return True


class OptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def set_shape(self, name: str, min: tuple[int, ...], opt: tuple[int, ...], max: tuple[int, ...]) -> None:
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return b"fake-timing-cache:" + str(len(self.data) + 1).encode()


class BuilderConfig:
    def __init__(self) -> None:
        self.flags: set[Any] = set()
        self.memory_pools: dict[Any, int] = {}
        self.profiles: list[OptimizationProfile] = []
        self.timing_cache_inputs: list[bytes] = []
        self._cache: TimingCache | None = None

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.memory_pools[pool] = size

    def add_optimization_profile(self, profile: OptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> TimingCache:
        self.timing_cache_inputs.append(bytes(data))
        return TimingCache(data)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if cache.data and not cache.data.startswith(b"fake-timing-cache:"):
            return False  # a cache from "another TensorRT/GPU"
        self._cache = cache
        return True

    def get_timing_cache(self) -> TimingCache:
        assert self._cache is not None, "get_timing_cache before set_timing_cache"
        return self._cache


class IProgressMonitor:
    """Base class our progress monitor derives from (TensorRT >= 8.6 calls these during a build)."""

    def __init__(self) -> None:
        pass


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.networks: list[Network] = []
        self.configs: list[BuilderConfig] = []
        _WORLD.builders.append(self)

    def create_network(self, flags: int = 0) -> Network:
        self.networks.append(Network(flags))
        return self.networks[-1]

    def create_builder_config(self) -> BuilderConfig:
        self.configs.append(BuilderConfig())
        return self.configs[-1]

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes | None:
        monitor = getattr(config, "progress_monitor", None)
        if monitor is not None:  # the phases TensorRT reports, nested like the real ones
            monitor.phase_start("Building engine", None, 2)
            monitor.phase_start("Tactic selection", "Building engine", 3)
            _WORLD.monitor_steps = [monitor.step_complete("Tactic selection", i) for i in range(3)]
            monitor.phase_finish("Tactic selection")
            monitor.step_complete("Building engine", 1)
            monitor.phase_finish("Building engine")
        if _WORLD.fail_build or not config.profiles:
            return None
        header = {
            "version": _WORLD.version,
            "profile": {k: [list(s) for s in v] for k, v in config.profiles[0].shapes.items()},
            "grid": network.grid,
        }
        head = json.dumps(header).encode()
        return PLAN_MAGIC + len(head).to_bytes(4, "little") + head + network.onnx_bytes


class Engine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self.header = header
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self._names = ["tiles", "bank", "distances", "features"]

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in ("tiles", "bank") else TensorIOMode.OUTPUT

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> tuple[tuple[int, ...], ...]:
        assert profile_index == 0
        return tuple(tuple(s) for s in self.header["profile"][name])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        r = self.header["profile"]["tiles"][2][1]
        d = self.header["profile"]["bank"][2][1]
        g = self.header["grid"]
        return {"tiles": (-1, r, r, 3), "bank": (-1, d), "distances": (-1, g, g), "features": (-1, g, g, d)}[name]

    def create_execution_context(self) -> ExecutionContext:
        context = ExecutionContext(self)
        _WORLD.contexts.append(context)
        return context


class ExecutionContext:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.address_calls: list[str] = []
        self.shape_calls: list[tuple[str, tuple[int, ...]]] = []
        self.executions: list[int] = []  # stream handles

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        self.shape_calls.append((name, tuple(shape)))
        if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.address_calls.append(name)
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.executions.append(int(stream_handle))
        if _WORLD.real_cuda is not None:
            _WORLD.real_cuda.synchronize(stream_handle)  # real TensorRT would run after the queued copies
        elif stream_handle not in _WORLD.streams:
            raise ValueError(f"fake TensorRT: unknown stream {stream_handle}")
        b, r = self.shapes["tiles"][0], self.shapes["tiles"][1]
        n, d = self.shapes["bank"]
        tiles = np.frombuffer(_WORLD.read(self.addresses["tiles"], b * r * r * 3), np.uint8).reshape(b, r, r, 3)
        bank = np.frombuffer(_WORLD.read(self.addresses["bank"], n * d * 4), np.float32).reshape(n, d)
        distances, features = self.engine.session.run(["distances", "features"], {"tiles": tiles, "bank": bank})
        if _WORLD.output_noise:  # a deterministic, position-dependent error (parity-failure tests)
            pattern = (np.arange(distances.size, dtype=np.float32) % 7 / 7).reshape(distances.shape)
            distances = distances + np.float32(_WORLD.output_noise) * pattern
        _WORLD.write(self.addresses["distances"], np.ascontiguousarray(distances, np.float32).tobytes())
        _WORLD.write(self.addresses["features"], np.ascontiguousarray(features, np.float32).tobytes())
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
        data = bytes(data)
        if not data.startswith(PLAN_MAGIC):
            return None
        try:
            size = int.from_bytes(data[len(PLAN_MAGIC) : len(PLAN_MAGIC) + 4], "little")
            start = len(PLAN_MAGIC) + 4
            header = json.loads(data[start : start + size])
            if header["version"] != _WORLD.version:
                return None  # real TensorRT refuses plans of another version
            return Engine(header, data[start + size :])
        except Exception:  # TensorRT returns None on a bad plan
            return None


# --- pycuda -------------------------------------------------------------------------------------


class LogicError(RuntimeError):
    """pycuda._driver.LogicError (what pycuda raises for a call without a current context)."""


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        _WORLD.require_context("cuMemAlloc")
        self.ptr = _WORLD.alloc(nbytes)

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        _WORLD.require_context("cuMemFree")
        _WORLD.freed.append(self.ptr)
        _WORLD.memory.pop(self.ptr, None)


class Stream:
    def __init__(self) -> None:
        _WORLD.require_context("cuStreamCreate")
        self.handle = 0xABC000 + len(_WORLD.streams)
        _WORLD.streams.append(self.handle)
        self.synchronized = 0

    def synchronize(self) -> None:
        _WORLD.require_context("cuStreamSynchronize")
        self.synchronized += 1


class Device:
    def __init__(self, ordinal: int = 0) -> None:
        if ordinal != 0:
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {ordinal}")
        self.ordinal = ordinal

    @staticmethod
    def count() -> int:
        return 1

    def compute_capability(self) -> tuple[int, int]:
        return _WORLD.compute_capability

    def name(self) -> str:
        return _WORLD.device_name

    def retain_primary_context(self) -> Context:
        if _WORLD._primary is None:
            _WORLD._primary = Context(self)
        return _WORLD._primary


class Context:
    """A CUDA context; current per thread (a stack per thread, like the driver's)."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def push(self) -> None:
        _WORLD.pushes += 1
        _WORLD.context_stack().append(self)

    @staticmethod
    def pop() -> None:
        stack = _WORLD.context_stack()
        if not stack:
            raise LogicError("cuCtxPopCurrent failed: invalid device context")
        stack.pop()

    @staticmethod
    def get_current() -> Context | None:
        return _WORLD.current_context()

    @staticmethod
    def get_device() -> Device:
        _WORLD.require_context("cuCtxGetDevice")
        context = _WORLD.current_context()
        return context.device if context is not None else Device()

    def detach(self) -> None:
        pass


def init(flags: int = 0) -> None:
    pass


def mem_alloc(nbytes: int) -> DeviceAllocation:
    return DeviceAllocation(nbytes)


def pagelocked_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    _WORLD.require_context("cuMemHostAlloc")
    _WORLD.pinned.append((tuple(shape), np.dtype(dtype)))
    return np.zeros(shape, dtype)


def memcpy_htod_async(dest: int, src: np.ndarray, stream: Stream) -> None:
    _WORLD.require_context("cuMemcpyHtoDAsync")
    _WORLD.copies.append(("htod_async", int(dest), src.nbytes))
    _WORLD.write(int(dest), np.ascontiguousarray(src).tobytes())


def memcpy_htod(dest: int, src: np.ndarray) -> None:
    _WORLD.require_context("cuMemcpyHtoD")
    _WORLD.copies.append(("htod", int(dest), src.nbytes))
    _WORLD.write(int(dest), np.ascontiguousarray(src).tobytes())


def memcpy_dtoh_async(dest: np.ndarray, src: int, stream: Stream) -> None:
    _WORLD.require_context("cuMemcpyDtoHAsync")
    _WORLD.copies.append(("dtoh_async", int(src), dest.nbytes))
    dest[...] = np.frombuffer(_WORLD.read(int(src), dest.nbytes), dest.dtype).reshape(dest.shape)


class _AutoPrimaryCtx(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import pycuda.autoprimaryctx`` runs code, as in pycuda: the primary context becomes current on the importing thread only."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "pycuda.autoprimaryctx":
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        device = Device(0)
        context = device.retain_primary_context()
        context.push()
        module.device, module.context = device, context  # type: ignore[attr-defined]


# --- installation -------------------------------------------------------------------------------

_WORLD = World()


def _tensorrt_module(world: World) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__doc__ = "TEST DOUBLE of tensorrt (tests/doubles/fake_tensorrt.py)"
    trt.__version__ = world.version
    trt.Logger = Logger
    trt.Builder = Builder
    trt.Runtime = Runtime
    trt.OnnxParser = OnnxParser
    trt.IProgressMonitor = IProgressMonitor
    trt.LayerType = LayerType
    trt.TensorIOMode = TensorIOMode
    trt.float32, trt.float16, trt.int32, trt.int64, trt.bool, trt.uint8 = (
        DataType.FLOAT, DataType.HALF, DataType.INT32, DataType.INT64, DataType.BOOL, DataType.UINT8)
    flags = {"OBEY_PRECISION_CONSTRAINTS": 11, "PREFER_PRECISION_CONSTRAINTS": 12} if world.fp16_flag else {}
    if world.fp16_flag:
        flags["FP16"] = 0
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {"TF32": 7, "REFIT": 3, **flags})
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    return trt


def install(monkeypatch: Any, **settings: Any) -> World:
    """Put fake ``tensorrt`` and ``pycuda`` modules in ``sys.modules`` for one test; return the recording world."""
    global _WORLD
    _WORLD = World(**settings)
    pycuda = types.ModuleType("pycuda")
    pycuda.__path__ = []  # a package, so ``import pycuda.autoprimaryctx`` reaches the finder below
    driver = types.ModuleType("pycuda.driver")
    for name in ("init", "mem_alloc", "pagelocked_empty", "memcpy_htod_async", "memcpy_htod", "memcpy_dtoh_async"):
        setattr(driver, name, globals()[name])
    driver.Stream, driver.Context, driver.Device, driver.LogicError = Stream, Context, Device, LogicError
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, "tensorrt", _tensorrt_module(_WORLD))
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    # autoprimaryctx is imported for real (its import pushes the context on the importing thread);
    # set-then-delete so monkeypatch removes whatever the import leaves behind.
    monkeypatch.setitem(sys.modules, "pycuda.autoprimaryctx", None)
    monkeypatch.delitem(sys.modules, "pycuda.autoprimaryctx")
    monkeypatch.setattr(sys, "meta_path", [_AutoPrimaryCtx(), *sys.meta_path])
    return _WORLD

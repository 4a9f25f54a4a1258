"""The region expert: which compiled graph runs, how frames are tiled, and the memory bank."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from edge.config.base import RecipePath, StrictModel

Provider = Literal["tensorrt", "cuda", "cpu"]


class FidelityConfig(StrictModel):
    """Least fidelity to the FP32 graph that an INT8/FP16 expert's manifest must show to be loaded."""

    distance_correlation: float = Field(
        0.995, ge=-1.0, le=1.0, description="Minimum correlation of patch distances with the FP32 expert's (manifest fidelity)."
    )
    score_spearman: float = Field(
        0.99, ge=-1.0, le=1.0, description="Minimum Spearman rank correlation of image scores with the FP32 expert's."
    )
    max_distance_error: float | None = Field(
        None, gt=0, description="Largest allowed max abs patch-distance error vs FP32; null = not checked."
    )


class OnnxRuntimeExpertConfig(StrictModel):
    """ONNX Runtime backend: CPU everywhere, CUDA or the TensorRT execution provider on a GPU."""

    implementation: ClassVar[str] = "edge.expert.onnxruntime:OnnxRuntimeExpert"
    backend: Literal["onnxruntime"] = Field("onnxruntime", description="Selects the ONNX Runtime backend.")
    model: RecipePath = Field(description="Path of expert.onnx written by `iad-export dinov2`; its manifest.json sits beside it.")
    providers: list[Provider] = Field(
        default_factory=lambda: list[Provider](["cpu"]),
        description="Execution providers in order of preference; CPU is always appended as the fallback.",
    )
    threads: int = Field(2, ge=1, le=256, description="Intra-op threads of the ONNX Runtime session.")
    trt_cache_dir: RecipePath | None = Field(
        None, description="Engine cache folder for the TensorRT execution provider (built on first run, reused after)."
    )
    trt_fp16: bool = Field(True, description="Let the TensorRT execution provider use FP16 kernels.")
    trt_max_tiles: int = Field(8, ge=1, le=256, description="Largest tile batch in the TensorRT execution provider's profile.")
    trt_max_bank: int = Field(65536, ge=2, description="Largest memory bank in the TensorRT execution provider's profile.")
    spin_wait: bool = Field(
        False,
        description="Let ONNX Runtime's worker threads busy-wait between runs. Off: on a 2-core station the spinning "
        "took CPU from the lane's own threads and made the expert slower (docs/benchmarks.md).",
    )
    min_fidelity: FidelityConfig = Field(
        default_factory=FidelityConfig,
        description="An INT8/FP16 expert (iad-export quantize) loads only if its manifest's measured fidelity meets this.",
    )

    @field_validator("providers")
    @classmethod
    def _providers_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one provider, e.g. [cpu]")
        return value


class TensorRTExpertConfig(StrictModel):
    """Native TensorRT backend (a serialized plan built by `iad-export dinov2 --engine`)."""

    implementation: ClassVar[str] = "edge.expert.tensorrt:TensorRTExpert"
    backend: Literal["tensorrt"] = Field("tensorrt", description="Selects the native TensorRT backend.")
    engine: RecipePath = Field(description="Path of expert.plan; its manifest.json sits beside it.")
    max_tiles: int = Field(8, ge=1, description="Largest tile batch the engine profile allows.")
    max_bank: int = Field(65536, ge=1, description="Largest memory bank the engine profile allows.")


class OpenVinoExpertConfig(StrictModel):
    """OpenVINO backend for Intel CPUs (extra `openvino`): the INT8 graph from `iad-export quantize --runtime openvino`."""

    implementation: ClassVar[str] = "edge.expert.openvino:OpenVinoExpert"
    backend: Literal["openvino"] = Field("openvino", description="Selects the OpenVINO CPU backend.")
    model: RecipePath = Field(
        description="Path of expert.onnx: FP32 from `iad-export dinov2`, or INT8 from `iad-export quantize --runtime openvino`."
    )
    threads: int = Field(2, ge=1, le=256, description="Inference threads of the OpenVINO CPU plugin.")
    min_fidelity: FidelityConfig = Field(
        default_factory=FidelityConfig,
        description="An INT8 expert loads only if its manifest's fidelity, measured on OpenVINO, meets this.",
    )


ExpertConfig = Annotated[
    OnnxRuntimeExpertConfig | TensorRTExpertConfig | OpenVinoExpertConfig,
    Field(discriminator="backend"),
]


class TilingConfig(StrictModel):
    """How a frame (after the ROI crop) becomes model-sized tiles.

    ``resize`` scales the ROI to one square model input (MVTec-style parts);
    ``tile`` cuts overlapping model-sized tiles at native resolution and stitches
    the maps back (wide line-scan frames, small defects).
    """

    mode: Literal["resize", "tile"] = Field("resize", description="'resize' the ROI to one model input, or cut overlapping 'tile's.")
    resolution: int = Field(224, ge=14, le=2048, description="Model input size in pixels (square); a multiple of the patch size (14).")
    overlap: float = Field(0.25, ge=0.0, lt=0.9, description="Fraction of a tile shared with its neighbour in 'tile' mode.")
    max_batch: int = Field(8, ge=1, le=256, description="Tiles sent to the expert in one call.")
    max_megapixels: float | None = Field(
        None, gt=0,
        description="Largest frame accepted, in megapixels; a larger frame is refused before it is tiled (fail-safe "
        "verdict on the line). null: 4x the largest frame the bank was calibrated on (at least 1 MP).",
    )

    @field_validator("resolution")
    @classmethod
    def _multiple_of_patch(cls, value: int) -> int:
        if value % 14:
            raise ValueError(f"must be a multiple of the patch size 14, e.g. {max(14, round(value / 14) * 14)}")
        return value


class BankConfig(StrictModel):
    """The memory bank of good-part patch features that the expert compares against."""

    path: RecipePath = Field(description="Bank file (.npz) written by `iad-edge calibrate`.")
    rotations: bool = Field(False, description="Add the 8 rotations (45° steps) of every good image (rotation-invariant parts).")
    coreset_max: int | None = Field(
        None, ge=1, description="Cap the bank with a greedy coreset to this many patches; null keeps every patch."
    )
    foreground_mask: bool = Field(
        False, description="Mask the background by the first PCA component of the patch features (parts on a plain background)."
    )


class RoiConfig(StrictModel):
    """Region of interest in frame pixels; everything outside it is ignored."""

    x: int = Field(0, ge=0, description="Left edge in pixels.")
    y: int = Field(0, ge=0, description="Top edge in pixels.")
    width: int = Field(gt=0, description="Width in pixels.")
    height: int = Field(gt=0, description="Height in pixels.")

"""The assistant lane: explanations with a GGUF model and mask-guided defect generation."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from edge.config.base import RecipePath, StrictModel


class AssistantConfig(StrictModel):
    """Model, resources and backlog of the assistant process (lower priority than the lane)."""

    enabled: bool = Field(False, description="Run the assistant lane (in `iad-edge demo`, as a child process).")
    model: Optional[RecipePath] = Field(None, description="GGUF language model (e.g. a quantized Qwen).")
    mmproj: Optional[RecipePath] = Field(None, description="GGUF vision projector for a VLM; crop and overlay go in as images.")
    n_ctx: int = Field(2048, ge=128, description="Context size in tokens.")
    threads: int = Field(1, ge=1, description="CPU threads for llama.cpp.")
    gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU (-1 = all).")
    max_tokens: int = Field(256, ge=1, description="Largest answer in tokens.")
    job_budget_s: float = Field(30.0, gt=0, description="Time budget of one explanation job.")
    nice: int = Field(10, ge=0, le=19, description="Nice value of the assistant process.")
    cpu_affinity: Optional[list[int]] = Field(None, description="CPUs the assistant may run on; null = all.")
    backlog: int = Field(8, ge=1, description="Jobs waiting; when full the oldest is dropped and a 'skipped' note published.")
    prototypes: Optional[RecipePath] = Field(None, description="Defect-type prototypes (.npz) from `iad-edge calibrate --defects`.")
    spool: RecipePath = Field("assistant-spool", description="Folder where the lane drops NG jobs when the assistant runs beside it.")

"""The assistant lane: explanations with a GGUF model and mask-guided defect generation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge.config.base import RecipePath, StrictModel


class AssistantConfig(StrictModel):
    """Model, resources and backlog of the assistant process (lower priority than the lane)."""

    enabled: bool = Field(False, description="Run the assistant lane (in `iad-edge demo`, as a child process).")
    model: RecipePath | None = Field(None, description="GGUF language model (e.g. a quantized Qwen).")
    mmproj: RecipePath | None = Field(None, description="GGUF vision projector for a VLM; crop and overlay go in as images.")
    n_ctx: int = Field(2048, ge=128, description="Context size in tokens.")
    threads: int = Field(1, ge=1, description="CPU threads for llama.cpp.")
    gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU (-1 = all).")
    max_tokens: int = Field(256, ge=1, description="Largest answer in tokens.")
    job_budget_s: float = Field(30.0, gt=0, description="Time budget of one explanation job.")
    nice: int = Field(10, ge=0, le=19, description="Nice value of the assistant process.")
    cpu_affinity: list[int] | None = Field(None, description="CPUs the assistant may run on; null = all.")
    hard_yield: bool = Field(
        True,
        description="Let the real-time lane stop this process (SIGSTOP/SIGCONT through a pidfd) while a frame is in "
        "flight, on top of pausing between tokens: llama.cpp steps that cannot be interrupted then never overlap a frame.",
    )
    recycle_after_jobs: int = Field(
        2000, ge=0,
        description="Restart the assistant process after this many jobs (exit code 75, restarted by its supervisor or "
        "systemd): llama.cpp's native memory grows by a few kB per answer. 0 = never.",
    )
    backlog: int = Field(8, ge=1, description="Jobs waiting; when full the oldest is dropped and a 'skipped' note published.")
    prototypes: RecipePath | None = Field(None, description="Defect-type prototypes (.npz) from `iad-edge calibrate --defects`.")
    projector: RecipePath | None = Field(
        None, description="Region projector (projector.json from `iad-export projector`): each region enters the model as "
        "injected embeddings and the model's own claims (model_location, model_defect_type, consistent) join the explanation.")
    spool: RecipePath = Field(Path("assistant-spool"), description="Folder where the lane drops NG jobs when the assistant runs beside it.")
    # --- the assistant lane -------------------------------------------------------------
    sched_idle: bool = Field(
        True, description="Run under the SCHED_IDLE policy: the assistant only gets CPU time the real-time lane leaves idle."
    )
    io_priority: Literal["idle", "best-effort", "unchanged"] = Field(
        "idle", description="IO scheduling class of the assistant process (ioprio_set); 'idle' never competes with the lane's disk writes."
    )
    busy_signal: str | None = Field(
        None, description="Name of the shared-memory flag the lane sets while frames are in flight; default iad-busy-<line>-<station>."
    )
    vlm_handler: Literal["auto", "mtmd", "qwen25vl"] = Field(
        "auto", description="llama-cpp-python chat handler for a VLM with an mmproj: 'mtmd' (generic, Qwen3.5 / Qwen2.5-VL), 'qwen25vl', or 'auto'."
    )
    top_k: int = Field(3, ge=1, le=20, description="Defect-type candidates (nearest prototypes) given to the model per region.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy (reproducible answers).")
    seed: int = Field(0, description="Sampling seed of llama.cpp.")
    mqtt_intake: bool = Field(True, description="Take NG jobs from the MQTT `result` topic (the spool folder is always read).")
    max_regions: int = Field(4, ge=1, le=64, description="Regions explained per NG part (strongest first); the others are listed without text.")
    self_test_every_s: float | None = Field(
        None, gt=0, description="Every this many seconds, inject a generated defect into the latest good frame (off the decision path) and publish whether the expert caught it on `status`; null = off."
    )

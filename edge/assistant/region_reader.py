"""Ask the language model about one region from its injected region tokens (projector + GGUF).

Prompt (from the projector's manifest, identical to training):
``prefix tokens | K region embeddings | suffix tokens``, then the answer under a
grammar that admits exactly ``{"location": …, "defect_type": …, "severity": …}``
with the trained vocabularies. Without evidence (the ablation) the K
embeddings are left out and the prompt is ``prefix | suffix``.

With an mmproj (the vision projector exported with a VL text GGUF) the region's
image crop (and its anomaly overlay) follows the region tokens, through llama.cpp's
multimodal library on the same context (:mod:`edge.assistant.region_mtmd`):
``prefix | K region embeddings | image(s) | suffix``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.assistant.projector import Projector
from edge.assistant.region_lm import RegionLM
from edge.assistant.region_mtmd import ImageInput, check_mmproj

MAX_ANSWER_TOKENS = 48


class RegionReader:
    """A loaded projector + GGUF, checked against each other and the expert."""

    def __init__(
        self,
        projector: str | Path,
        model: str | Path,
        expert_manifest: str | Path | None,
        *,
        n_ctx: int = 256,
        threads: int = 1,
        gpu_layers: int = 0,
        should_pause: Callable[[], bool] | None = None,
        check_sha256: bool = True,
        mmproj: str | Path | None = None,
    ):
        self.projector = Projector.load(projector)
        self.projector.check_for(expert_manifest, model)
        if mmproj is not None:
            check_mmproj(mmproj, check_sha256)
        self.lm = RegionLM(model, n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers, check_sha256=check_sha256)
        self.images: ImageInput | None = None
        try:
            self.projector.check_for(None, model, n_embd=self.lm.n_embd)
            if mmproj is not None:
                self.images = ImageInput(self.lm, mmproj, threads=threads, use_gpu=gpu_layers != 0,
                                         check_sha256=False)  # hashed above, before the model was loaded
        except BaseException:
            self.lm.close()
            raise
        self.prefix = self.lm.tokenize(self.projector.prompt["prefix"])
        self.suffix = self.lm.tokenize(self.projector.prompt["suffix"])
        self.grammar = self.projector.answer_grammar()
        self.should_pause = should_pause

    @property
    def trained_with_image(self) -> bool:
        """Whether the projector (and LLM) were trained with the image crop in the prompt (manifest ``prompt.image``;
        manifests that do not say were trained without one)."""
        return bool(self.projector.prompt.get("image", False))

    def segments(self, evidence: np.ndarray | None, images: Sequence[np.ndarray] | None = None) -> list[Any]:
        """``prefix | K region embeddings | image segments | suffix`` (images only with an mmproj; the caller
        closes the image segments, see :meth:`ask`)."""
        middle: list[Any] = [] if evidence is None else [self.projector.project(evidence)]
        if images:
            if self.images is None:
                raise ValueError("images given but no mmproj is loaded")
            middle += [self.images.segment(im) for im in images]
        return [self.prefix, *middle, self.suffix]

    def ask(self, evidence: np.ndarray | None, deadline: float | None = None,
            images: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
        """The model's claims about the region (None when the answer was cut off), raw text and timings."""
        t0 = time.monotonic()
        segments = self.segments(evidence, images)
        try:
            out = self.lm.generate(segments, MAX_ANSWER_TOKENS, grammar=self.grammar,
                                   should_pause=self.should_pause, deadline=deadline)
        finally:
            for seg in segments:
                if hasattr(seg, "close"):
                    seg.close()
        out["claims"] = self.projector.parse_answer(out["text"])
        out["elapsed_ms"] = round((time.monotonic() - t0) * 1000, 2)
        return out

    def close(self) -> None:
        if self.images is not None:
            self.images.close()
        self.lm.close()

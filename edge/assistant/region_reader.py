"""Ask the language model about one region from its injected region tokens (projector + GGUF).

Prompt (from the projector's manifest, identical to training):
``prefix tokens | K region embeddings | suffix tokens``, then the answer under a
grammar that admits exactly ``{"location": …, "defect_type": …, "severity": …}``
with the trained vocabularies. Without evidence (the ablation) the K
embeddings are left out and the prompt is ``prefix | suffix``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.assistant.projector import Projector
from edge.assistant.region_lm import RegionLM

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
    ):
        self.projector = Projector.load(projector)
        self.projector.check_for(expert_manifest, model)
        self.lm = RegionLM(model, n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers, check_sha256=check_sha256)
        self.projector.check_for(None, model, n_embd=self.lm.n_embd)
        self.prefix = self.lm.tokenize(self.projector.prompt["prefix"])
        self.suffix = self.lm.tokenize(self.projector.prompt["suffix"])
        self.grammar = self.projector.answer_grammar()
        self.should_pause = should_pause

    def segments(self, evidence: np.ndarray | None) -> list[Any]:
        if evidence is None:
            return [self.prefix, self.suffix]
        return [self.prefix, self.projector.project(evidence), self.suffix]

    def ask(self, evidence: np.ndarray | None, deadline: float | None = None) -> dict[str, Any]:
        """The model's claims about the region (None when the answer was cut off), raw text and timings."""
        t0 = time.monotonic()
        out = self.lm.generate(self.segments(evidence), MAX_ANSWER_TOKENS, grammar=self.grammar,
                               should_pause=self.should_pause, deadline=deadline)
        out["claims"] = self.projector.parse_answer(out["text"])
        out["elapsed_ms"] = round((time.monotonic() - t0) * 1000, 2)
        return out

    def close(self) -> None:
        self.lm.close()

"""Reference for region-token injection: the same prompt + embeddings through transformers (``inputs_embeds``).

The assistant feeds region embeddings to llama.cpp through ``llama_batch.embd``
(:mod:`edge.assistant.region_lm`). This module computes what the Hugging Face
model does with the identical input — prefix token ids, K embeddings in place
of K placeholder tokens, suffix token ids, then greedy decoding — so tests and
``iad-export projector`` can compare tokens *and* logits step by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def load_hf_causal_lm(hf_dir: str | Path) -> Any:
    """The checkpoint's causal LM in float32, eval mode (CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()


def hf_greedy_with_injection(
    model: Any, prefix: Sequence[int], embeds: np.ndarray, suffix: Sequence[int], steps: int,
) -> tuple[list[int], np.ndarray]:
    """Greedy tokens and the logits each was chosen from ([steps, n_vocab]), EOS not honoured.

    Positions are transformers' own for ``inputs_embeds`` (sequential; for
    M-RoPE models the same position in every section).
    """
    import torch

    emb = model.get_input_embeddings()
    with torch.no_grad():
        ids = torch.tensor([list(prefix) + [0] * len(embeds) + list(suffix)])
        x = emb(ids).clone()
        x[0, len(prefix) : len(prefix) + len(embeds)] = torch.from_numpy(np.asarray(embeds, dtype=np.float32))
        tokens: list[int] = []
        logits: list[np.ndarray] = []
        out = model(inputs_embeds=x, use_cache=True)
        past = out.past_key_values
        for step in range(steps):
            last = out.logits[0, -1].float()
            logits.append(last.numpy().copy())
            tok = int(torch.argmax(last))
            tokens.append(tok)
            if step + 1 < steps:
                out = model(inputs_embeds=emb(torch.tensor([[tok]])), past_key_values=past, use_cache=True)
                past = out.past_key_values
    return tokens, np.stack(logits)

"""Grounded explanations of NG regions with a GGUF model (llama-cpp-python).

The model is handed the region evidence (and, for a VLM with an mmproj, the
crop and the mask overlay) and must answer JSON that a llama.cpp grammar built
from a JSON Schema enforces token by token: ``defect_type`` (one of the known
types or "unknown"), ``severity``, ``description``, ``evidence``. The model is
never asked for ``location`` or ``bbox``: they are copied from the region, so
an explanation cannot contradict the mask, and no tokens are spent on them.

Yielding: generation is streamed; before each next token the explainer asks
``should_pause()`` (the real-time lane's busy flag) and waits while it is set,
so llama.cpp computes nothing while a frame is in flight. A per-job time
budget (pauses included) ends generation early; an answer that is cut off or
not valid JSON becomes a rule-based fallback marked ``"source": "fallback"``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.assistant.evidence import LOCATIONS, evidence_lines, png_data_uri, severity_from_evidence
from edge.assistant.gguf_check import open_llama
from edge.errors import IadError
from edge.generation import DEFECT_TYPES

log = logging.getLogger(__name__)

SEVERITIES = ("minor", "major", "critical")
KNOWN_TYPES = tuple(dict.fromkeys([*DEFECT_TYPES, "spot", "missing"]))  # generation types + synthetic source names
DESCRIPTION_MAX = 160
EVIDENCE_MAX = 120

SYSTEM_PROMPT = (
    "You are the inspection assistant of an industrial visual inspection station. "
    "An anomaly detector flagged a region of a part. Using only the measurements given "
    "(and the images, if any), name the most likely defect type, rate its severity "
    "(minor, major, critical) and describe it in one or two sentences for a quality engineer. "
    "In 'evidence', cite the measurements that support your answer. Answer with JSON only."
)


class ExplanationError(IadError):
    """The explanation model cannot be used (missing llama-cpp-python, bad GGUF or mmproj)."""


class Explanation(BaseModel):
    """One region's explanation as published on `explanation` and written by `iad-edge explain`."""

    model_config = ConfigDict(extra="allow")

    region: int = Field(description="Index of the region in the inspection result (strongest first).")
    defect_type: str = Field(description="Defect type: a known type or 'unknown'.")
    location: Literal[LOCATIONS] = Field(description="3x3 location on the part, copied from the region.")  # type: ignore[valid-type]
    bbox: list[int] = Field(min_length=4, max_length=4, description="[x0, y0, x1, y1] (exclusive ends), copied from the region.")
    severity: Literal[SEVERITIES] = Field(description="minor, major or critical.")  # type: ignore[valid-type]
    description: str = Field(description="One or two sentences for a quality engineer.")
    evidence: str = Field(description="The measurements the answer rests on.")
    source: Literal["model", "fallback"] = Field(description="'model' when the model's JSON was used, 'fallback' when rules filled in.")


def answer_schema(defect_types: Sequence[str]) -> dict[str, Any]:
    """JSON Schema of what the model writes (turned into a llama.cpp grammar). Bounded lengths keep answers finite."""
    return {
        "type": "object",
        "properties": {
            "defect_type": {"type": "string", "enum": list(dict.fromkeys([*defect_types, "unknown"]))},
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "description": {"type": "string", "minLength": 1, "maxLength": DESCRIPTION_MAX},
            "evidence": {"type": "string", "minLength": 1, "maxLength": EVIDENCE_MAX},
        },
        "required": ["defect_type", "severity", "description", "evidence"],
        "additionalProperties": False,
    }


def _import_llama_cpp():  # type: ignore[no-untyped-def]
    try:
        import llama_cpp
    except ImportError as exc:
        raise ExplanationError("llama-cpp-python is not installed: pip install 'iad-edge[assistant]'") from exc
    return llama_cpp


def _chat_handler(llama_cpp: Any, mmproj: Path, kind: str) -> Any:
    """The multimodal chat handler for a VLM: MTMD (generic, incl. Qwen3.5/Qwen2.5-VL) or the Qwen2.5-VL one."""
    from llama_cpp import llama_chat_format as fmt

    if not Path(mmproj).is_file():
        raise ExplanationError(f"{mmproj}: mmproj (vision projector) file not found")
    names = {"mtmd": ["MTMDChatHandler"], "qwen25vl": ["Qwen25VLChatHandler"],
             "auto": ["MTMDChatHandler", "Qwen25VLChatHandler"]}[kind]
    for name in names:
        cls = getattr(fmt, name, None)
        if cls is not None:
            try:
                return cls(clip_model_path=str(mmproj), verbose=False)
            except Exception as exc:  # handlers raise ValueError/RuntimeError variously
                raise ExplanationError(f"{mmproj}: the {name} could not use this mmproj ({exc})") from exc
    raise ExplanationError(f"this llama-cpp-python has none of {names}; upgrade it (>= 0.3.16)")


PREFILL_CHUNK_TOKENS = 16  # prompt tokens evaluated between two checks of the lane's busy flag


class Explainer:
    """A loaded GGUF model that turns region evidence into a schema-valid explanation."""

    def __init__(
        self,
        model: str | Path,
        mmproj: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        threads: int = 1,
        gpu_layers: int = 0,
        max_tokens: int = 256,
        budget_s: float = 30.0,
        temperature: float = 0.0,
        seed: int = 0,
        vlm_handler: str = "auto",
        should_pause: Callable[[], bool] | None = None,
        check_sha256: bool = True,
    ):

        llama_cpp = _import_llama_cpp()
        self.model_path = Path(model)
        self.mmproj = Path(mmproj) if mmproj else None
        self.max_tokens, self.budget_s = max_tokens, budget_s
        self.temperature, self.seed = temperature, seed
        self.should_pause = should_pause
        handler = _chat_handler(llama_cpp, self.mmproj, vlm_handler) if self.mmproj else None
        self.llm = open_llama(
            self.model_path, check_sha256=check_sha256, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
            n_gpu_layers=gpu_layers, seed=seed, verbose=False, chat_handler=handler,
        )
        self.vision = handler is not None
        self.n_ctx = n_ctx
        self._pause_until = 0.0  # monotonic deadline for pauses of the current answer
        self._paused_s = 0.0  # time paused during the current answer
        if should_pause is not None:
            self._make_prefill_yield(PREFILL_CHUNK_TOKENS)

    def _make_prefill_yield(self, chunk: int) -> None:
        """Evaluate prompts in small chunks and pause between them while the lane is busy.

        llama.cpp evaluates a whole prompt (hundreds of tokens, ~20 ms for even
        the tiny test model) in one uninterruptible call; the per-token pause
        alone cannot yield during it. Chunked evaluation is exactly equivalent
        (``Llama.eval`` continues from ``n_tokens``) and bounds the time the
        assistant can overlap a frame to one chunk.
        """
        original_eval = self.llm.eval

        def eval_yielding(tokens: Any) -> None:
            for start in range(0, len(tokens), chunk):
                self._wait_while_busy()
                original_eval(tokens[start : start + chunk])

        self.llm.eval = eval_yielding  # instance attribute: Llama.generate calls self.eval

    def _wait_while_busy(self) -> None:
        """Sleep while the real-time lane is busy (up to this answer's deadline); count the time paused."""
        if self.should_pause is None:
            return
        t = time.monotonic()
        while self.should_pause() and time.monotonic() < self._pause_until:
            time.sleep(0.001)
        self._paused_s += time.monotonic() - t

    @classmethod
    def from_config(cls, cfg: Any, model: str | Path | None = None, mmproj: str | Path | None = None,
                    should_pause: Callable[[], bool] | None = None) -> Explainer:
        """From the recipe's ``assistant`` section; ``model``/``mmproj`` override it (CLI flags)."""
        model = model or cfg.model
        if model is None:
            raise ExplanationError("no GGUF model: set assistant.model in the recipe or pass --model FILE.gguf")
        return cls(model, mmproj or cfg.mmproj, n_ctx=cfg.n_ctx, threads=cfg.threads, gpu_layers=cfg.gpu_layers,
                   max_tokens=cfg.max_tokens, budget_s=cfg.job_budget_s, temperature=cfg.temperature, seed=cfg.seed,
                   vlm_handler=cfg.vlm_handler, should_pause=should_pause)

    def _grammar(self, types: tuple[str, ...]) -> Any:
        """A fresh grammar per answer: a LlamaGrammar carries parse state, and reusing one was
        measured to make every later answer slower (7 s → 10 s for the same 445 tokens)."""
        from llama_cpp import LlamaGrammar

        return LlamaGrammar.from_json_schema(json.dumps(answer_schema(types)), verbose=False)

    def _messages(self, ev: dict[str, Any], images: Sequence[np.ndarray] | None) -> list[dict[str, Any]]:
        text = evidence_lines(ev) + "\nAnswer as JSON with keys defect_type, severity, description, evidence."
        if self.vision and images:
            content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": png_data_uri(img)}} for img in images]
            content.append({"type": "text", "text": "Image 1: the region with context. Image 2: the same with the "
                                                    "flagged pixels in red.\n" + text})
            return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]

    def explain(self, ev: dict[str, Any], images: Sequence[np.ndarray] | None = None,
                deadline: float | None = None) -> dict[str, Any]:
        """Explain one region from its evidence (see :func:`edge.assistant.evidence.region_evidence`).

        Returns a dict valid against :class:`Explanation`, with ``location`` and
        ``bbox`` from the evidence, plus ``candidates``, ``finish`` ('stop',
        'length', 'budget' or 'error'), ``tokens``, ``elapsed_ms`` and ``paused_ms``.
        ``deadline`` (time.monotonic) caps this call in addition to the budget.
        """
        start = time.monotonic()
        end = start + self.budget_s if deadline is None else min(deadline, start + self.budget_s)
        types = tuple(dict.fromkeys([*(c["type"] for c in ev.get("candidates", [])), *KNOWN_TYPES]))
        text, finish, tokens = "", "error", 0
        self._pause_until, self._paused_s = end, 0.0
        error: str | None = None
        try:
            stream = self.llm.create_chat_completion(
                messages=self._messages(ev, images), grammar=self._grammar(types), max_tokens=self.max_tokens,
                temperature=self.temperature, seed=self.seed, stream=True,
            )
            finish = "length"
            for chunk in stream:
                choice = chunk["choices"][0]
                text += choice.get("delta", {}).get("content") or ""
                tokens += 1
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                    break
                self._wait_while_busy()  # yield to the real-time lane between tokens
                if time.monotonic() >= end:
                    finish = "budget"
                    break
            stream.close()
        except Exception as exc:  # a failing model must not kill the assistant loop
            error = f"{type(exc).__name__}: {exc}"
            log.warning("explanation failed: %s", error)
        answer = _parse_answer(text, types)
        out: dict[str, Any] = {"region": ev["region"]}
        if answer is not None:
            out.update(answer, source="model")
        else:
            out.update(_fallback(ev), source="fallback")
        out["location"], out["bbox"] = ev["location"], list(ev["bbox"])  # grounded: always the region's
        out.update(candidates=ev.get("candidates", []), finish=finish, tokens=tokens,
                   elapsed_ms=round((time.monotonic() - start) * 1000, 1), paused_ms=round(self._paused_s * 1000, 1))
        if answer is None:
            out["raw"] = text[:400]
        if error:
            out["error"] = error
        Explanation.model_validate(out)  # a bug here must surface in tests, not on the bus
        return out

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()


def _parse_answer(text: str, types: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    ok = (
        data.get("defect_type") in (*types, "unknown")
        and data.get("severity") in SEVERITIES
        and isinstance(data.get("description"), str)
        and isinstance(data.get("evidence"), str)
    )
    if not ok:
        return None
    return {k: data[k] for k in ("defect_type", "severity", "description", "evidence")}


def _fallback(ev: dict[str, Any]) -> dict[str, Any]:
    """Rule-based answer from the evidence alone (model failed, was cut off, or ran out of time)."""
    cands = ev.get("candidates") or []
    kind = cands[0]["type"] if cands else "unknown"
    area = f"{ev['area_mm2']:.3g} mm2" if ev.get("area_mm2") is not None else f"{ev['area_px']} px"
    return {
        "defect_type": kind,
        "severity": severity_from_evidence(ev),
        "description": f"Anomalous region at the {ev['location']} of the part, {area}"
        + (f", most similar to known {kind} examples." if cands else "."),
        "evidence": f"peak {ev['peak']:.3f}, mean {ev['mean']:.3f}, area {ev['area_px']} px",
    }


def fallback_explanation(ev: dict[str, Any], reason: str) -> dict[str, Any]:
    """A complete explanation without a model (none configured, or it failed to load): rules only."""
    out: dict[str, Any] = {"region": ev["region"], **_fallback(ev), "source": "fallback",
                           "location": ev["location"], "bbox": list(ev["bbox"]),
                           "candidates": ev.get("candidates", []), "finish": "error", "tokens": 0, "error": reason}
    Explanation.model_validate(out)
    return out

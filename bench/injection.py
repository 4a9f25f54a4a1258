"""Region-token injection vs the text-only prompt on the same GGUF: time to first token and tokens/s.

Both prompts go through the same runtime (:class:`edge.assistant.region_lm.RegionLM`),
the same answer grammar and the same model; they differ only in how the region
enters: K injected embeddings (``injected``) or the region's measurements as
text lines (``text``, what the assistant did before region tokens). The two are
measured interleaved in one run, so machine load (2 shared cores here) hits
both alike; compare the ratio, not absolute figures across runs.

    python bench/injection.py --bundle DIR [--runs 30] [--json out.json]

``--bundle``: a folder from ``iad-export projector`` (projector.json, GGUF).
Without one, a tiny Qwen3.5 + projector is trained first (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.assistant.projector import Projector
from edge.assistant.region_lm import RegionLM

TEXT_REGION = ("location bottom-right of the part, bounding box x=301..344, y=310..331 (44x22 px), area 412 px, "
               "anomaly peak 0.412, mean 0.231 (pixel threshold 0.120), image score 0.287")


def _bundle(tmp: Path) -> Path:
    from edge.expert.manifest import manifest_path_for  # noqa: F401 - import check only
    from export.dinov2 import export_dinov2
    from export.projector import export_projector
    from export.qwen import build_tiny_qwen35

    export_dinov2(tmp / "expert", tiny=True, resolution=112)
    build_tiny_qwen35(tmp / "tiny-qwen3.5")
    export_projector(tmp / "tiny-qwen3.5", tmp / "expert", ["synthetic:120"], tmp / "bundle", train_llm=True, epochs=10,
                     pre_tokenizer="qwen2")
    return tmp / "bundle"


def measure(bundle: Path, runs: int, threads: int) -> dict[str, object]:
    projector = Projector.load(bundle)
    gguf = bundle / projector.manifest["llm"]["gguf"]
    lm = RegionLM(gguf, n_ctx=512, threads=threads)
    grammar = projector.answer_grammar()
    prefix, suffix = lm.tokenize(projector.prompt["prefix"]), lm.tokenize(projector.prompt["suffix"])
    region_text = lm.tokenize(TEXT_REGION)
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict[str, float]]] = {"injected": [], "text": []}
    for i in range(runs + 2):
        ev = projector.mean + projector.std * rng.standard_normal(projector.mean.shape).astype(np.float32) * 0.5
        for name in ("injected", "text") if i % 2 == 0 else ("text", "injected"):
            segments = [prefix, projector.project(ev), suffix] if name == "injected" else [prefix, region_text, suffix]
            out = lm.generate(segments, 48, grammar=grammar)
            if i >= 2:  # two warm-up rounds
                n = max(1, len(out["tokens"]))
                rows[name].append({"ttft_ms": out["first_token_ms"], "prefill_ms": out["prefill_ms"],
                                   "tokens_per_s": n / max(out["decode_ms"] / 1000.0, 1e-9), "tokens": n})
    lm.close()
    result: dict[str, object] = {"model": gguf.name, "runs": runs, "threads": threads,
                                 "prompt_tokens": {"injected": len(prefix) + projector.tokens + len(suffix),
                                                   "text": len(prefix) + len(region_text) + len(suffix)}}
    for name, values in rows.items():
        result[name] = {k: round(statistics.median(v[k] for v in values), 3) for k in ("ttft_ms", "prefill_ms", "tokens_per_s", "tokens")}
    result["ttft_ratio_injected_over_text"] = round(result["injected"]["ttft_ms"] / result["text"]["ttft_ms"], 3)  # type: ignore[index]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="Folder from iad-export projector (default: train a tiny one first).")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="Write the figures here too.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or _bundle(Path(tmp))
        result = measure(bundle, args.runs, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""iad-export qwen --tiny-arch qwen3.5-vl: the Qwen3.5 vision-language model (transformers
``Qwen3_5ForConditionalGeneration``) -> text GGUF (llama.cpp arch qwen35) + mmproj GGUF (projector qwen3vl_merger);
llama.cpp answers about an image through the mmproj, and the same text GGUF takes injected region tokens
exactly as transformers does with ``inputs_embeds``."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'iad-edge[assistant]')")

from edge.assistant.gguf_check import sha256_file, verify_gguf
from edge.assistant.region_lm import RegionLM, gguf_architecture

NAME = "tiny-qwen3.5-vl"
PREFIX = "<|im_start|>user\nRegion: "
SUFFIX = "\nWhere and what is the defect?<|im_end|>\n<|im_start|>assistant\n"
CASES = 12
STEPS = 8


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``iad-export qwen --tiny-arch qwen3.5-vl --quant Q8_0`` run as a user would (the tiny checkpoint kept in hf/)."""
    out = tmp_path_factory.mktemp("tiny-qwen35-vl")
    proc = subprocess.run([sys.executable, "-m", "export.cli", "qwen", "--tiny-arch", "qwen3.5-vl", "--quant", "Q8_0",
                           "--keep-hf", str(out / "hf"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"mmproj-{NAME}-f16.gguf" in proc.stdout and "with the mmproj" in proc.stdout
    return out


@pytest.fixture(scope="module")
def vl_parity_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same architecture with wider random weights (logits far from flat), exported to F32 for parity."""
    from export.qwen import build_tiny_qwen35_vl, export_qwen

    root = tmp_path_factory.mktemp("tiny-qwen35-vl-parity")
    build_tiny_qwen35_vl(root / "hf", init_std=0.3)
    export_qwen(root, hf_dir=root / "hf", quant="F32", pre_tokenizer="qwen2", progress=False)
    return root


def test_tiny_qwen35_vl_exports_text_gguf_and_mmproj(vl_dir: Path) -> None:
    import gguf

    manifest = json.loads((vl_dir / "manifest.json").read_text())
    assert manifest["architecture"] == "Qwen3_5ForConditionalGeneration" and manifest["model_type"] == "qwen3_5"
    files = manifest["files"]
    assert files[f"{NAME}-Q8_0.gguf"]["role"] == "model"
    assert files[f"mmproj-{NAME}-f16.gguf"]["role"] == "mmproj" and files[f"mmproj-{NAME}-f16.gguf"]["quant"] == "F16"
    for name, entry in files.items():
        assert entry["sha256"] == sha256_file(vl_dir / name)
        verify_gguf(vl_dir / name)
    assert gguf_architecture(vl_dir / f"{NAME}-Q8_0.gguf") == "qwen35"  # the hybrid Qwen3.5 text model, not Qwen2
    reader = gguf.GGUFReader(str(vl_dir / f"mmproj-{NAME}-f16.gguf"))
    field = reader.fields["clip.projector_type"]
    assert bytes(field.parts[field.data[0]]).decode() == "qwen3vl_merger"  # Qwen3.5's vision tower, Qwen3-VL style
    assert manifest["verify"]["ok"] is True
    image = manifest["verify"]["image"]
    assert image["ok"] is True and image["prompt_tokens"] > image["text_prompt_tokens"]


def test_tiny_qwen35_vl_answers_about_an_image(vl_dir: Path) -> None:
    import cv2
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    crop = np.zeros((64, 128, 3), np.uint8)
    cv2.line(crop, (5, 5), (120, 60), (255, 255, 255), 3)  # a "scratch"
    uri = "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", crop)[1].tobytes()).decode()
    handler = MTMDChatHandler(clip_model_path=str(vl_dir / f"mmproj-{NAME}-f16.gguf"), verbose=False, use_gpu=False)
    llm = Llama(model_path=str(vl_dir / f"{NAME}-Q8_0.gguf"), chat_handler=handler, n_ctx=512, n_threads=1, verbose=False)
    try:
        with_image = llm.create_chat_completion(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                   {"type": "text", "text": "What defect?"}]}],
            max_tokens=3, temperature=0.0,
        )
        text_only = llm.create_chat_completion(messages=[{"role": "user", "content": "What defect?"}], max_tokens=3,
                                               temperature=0.0)
    finally:
        llm.close()
    assert with_image["usage"]["completion_tokens"] > 0
    assert with_image["usage"]["prompt_tokens"] > text_only["usage"]["prompt_tokens"]  # the image became tokens


def test_region_tokens_inject_into_the_vl_text_model(vl_dir: Path) -> None:
    """The text GGUF of the VL export (the file an mmproj pairs with) takes region embeddings through the batch API."""
    lm = RegionLM(vl_dir / f"{NAME}-Q8_0.gguf", n_ctx=128, threads=2)
    try:
        assert lm.arch == "qwen35" and lm.n_pos_per_embd == 4  # M-RoPE: 4 positions per injected embedding
        pre, suf = lm.tokenize(PREFIX), lm.tokenize(SUFFIX)
        rng = np.random.default_rng(0)
        a = lm.generate([pre, rng.standard_normal((4, lm.n_embd)).astype(np.float32), suf], max_tokens=4,
                        keep_logits=True, stop_at_eog=False)
        b = lm.generate([pre, rng.standard_normal((4, lm.n_embd)).astype(np.float32), suf], max_tokens=4,
                        keep_logits=True, stop_at_eog=False)
    finally:
        lm.close()
    assert len(a["tokens"]) == len(b["tokens"]) == 4
    assert not np.allclose(a["logits"][0], b["logits"][0])  # the injected embeddings reach the model


def test_region_token_parity_on_the_vl_model(vl_parity_dir: Path) -> None:
    """Same prompt and embeddings: llama.cpp (F32 GGUF of the VL export) and transformers'
    ``Qwen3_5ForConditionalGeneration`` with ``inputs_embeds`` give identical greedy tokens and close logits."""
    import torch
    from transformers import Qwen3_5ForConditionalGeneration

    from export.injection_parity import hf_greedy_with_injection

    model = Qwen3_5ForConditionalGeneration.from_pretrained(str(vl_parity_dir / "hf"), dtype=torch.float32).eval()
    lm = RegionLM(vl_parity_dir / "hf-F32.gguf", n_ctx=128, threads=2)
    try:
        pre, suf = lm.tokenize(PREFIX), lm.tokenize(SUFFIX)
        same, worst, spread, distinct = 0, 0.0, [], set()
        for c in range(CASES):
            inj = (np.random.default_rng(1000 + c).standard_normal((4, lm.n_embd)) * 0.3).astype(np.float32)
            ours = lm.generate([pre, inj, suf], max_tokens=STEPS, keep_logits=True, stop_at_eog=False)
            ref_tokens, ref_logits = hf_greedy_with_injection(model, pre, inj, suf, STEPS)
            same += ours["tokens"] == ref_tokens
            first = next((i for i, (x, y) in enumerate(zip(ours["tokens"], ref_tokens)) if x != y), None)
            upto = STEPS if first is None else first + 1
            worst = max(worst, float(np.abs(ours["logits"][:upto] - ref_logits[:upto]).max()))
            spread.append(float(ref_logits.std()))
            distinct.update(ref_tokens)
    finally:
        lm.close()
    print(f"qwen3.5-vl F32: {same}/{CASES} identical, max |logit diff| {worst:.5f}, logit std {np.mean(spread):.2f}")
    assert np.mean(spread) > 1.0 and len(distinct) > 4, "logits too flat / tokens too uniform for a meaningful comparison"
    assert worst < 0.05, f"max |logit diff| {worst:.4f}"  # F32 weights, llama.cpp's default F16 KV cache
    assert same >= CASES - 1, f"greedy tokens differ in {CASES - same} of {CASES} cases"

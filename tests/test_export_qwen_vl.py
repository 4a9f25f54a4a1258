"""iad-export qwen --tiny-vl: a vision-language Qwen2-VL -> language GGUF + mmproj GGUF that llama.cpp's image path runs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'iad-edge[assistant]')")

from edge.assistant.gguf_check import sha256_file, verify_gguf


def test_tiny_vl_exports_model_and_mmproj(tiny_vl_gguf_dir: Path) -> None:
    manifest = json.loads((tiny_vl_gguf_dir / "manifest.json").read_text())
    assert manifest["architecture"] == "Qwen2VLForConditionalGeneration"
    files = manifest["files"]
    assert files["tiny-qwen2-vl-Q8_0.gguf"]["role"] == "model"
    assert files["mmproj-tiny-qwen2-vl-f16.gguf"]["role"] == "mmproj"
    assert files["mmproj-tiny-qwen2-vl-f16.gguf"]["quant"] == "F16"
    for name, entry in files.items():
        assert entry["sha256"] == sha256_file(tiny_vl_gguf_dir / name)
        verify_gguf(tiny_vl_gguf_dir / name)
    assert manifest["verify"]["ok"] is True
    image = manifest["verify"]["image"]
    assert image["ok"] is True and image["prompt_tokens"] > image["text_prompt_tokens"]


def test_tiny_vl_answers_about_an_image(tiny_vl_gguf_dir: Path) -> None:
    import cv2
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    crop = np.zeros((64, 128, 3), np.uint8)
    cv2.line(crop, (5, 5), (120, 60), (255, 255, 255), 3)  # a "scratch"
    uri = "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", crop)[1].tobytes()).decode()
    handler = MTMDChatHandler(clip_model_path=str(tiny_vl_gguf_dir / "mmproj-tiny-qwen2-vl-f16.gguf"), verbose=False, use_gpu=False)
    llm = Llama(model_path=str(tiny_vl_gguf_dir / "tiny-qwen2-vl-Q8_0.gguf"), chat_handler=handler, n_ctx=512, n_threads=1, verbose=False)
    try:
        with_image = llm.create_chat_completion(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "What defect?"}]}],
            max_tokens=3, temperature=0.0,
        )
        text_only = llm.create_chat_completion(messages=[{"role": "user", "content": "What defect?"}], max_tokens=3, temperature=0.0)
    finally:
        llm.close()
    assert with_image["usage"]["completion_tokens"] > 0
    assert with_image["usage"]["prompt_tokens"] > text_only["usage"]["prompt_tokens"]  # the image became tokens

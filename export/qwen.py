"""Hugging Face Qwen checkpoint -> quantized GGUF for the assistant lane, verified, with a manifest.

Pipeline: (``--tiny`` / ``--tiny-vl`` / ``--tiny-arch qwen3.5|qwen3.5-vl``: build a
deterministic random tiny Qwen2 / Qwen2-VL / Qwen3.5 / Qwen3.5-VL + tokenizer) ->
llama.cpp converter to an f16 GGUF -> ``llama_cpp.llama_model_quantize`` to the
asked type -> load the result with ``llama_cpp.Llama`` and generate a few
tokens -> ``manifest.json`` ("iad-gguf/1"). For vision-language checkpoints the
mmproj (vision projector) GGUF is exported too and kept in f16 (projectors are
small and quantizing them costs accuracy for little gain).

Outputs are written to a staging folder and moved into ``out_dir`` only when
every step succeeded, so a failed export leaves no partial files behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edge.assistant.gguf_check import MANIFEST_FORMAT, MANIFEST_NAME, read_gguf_header, sha256_file
from export.errors import ExportError
from export.gguf_convert import ConversionError, convert_hf_to_gguf, llama_cpp_python_version

log = logging.getLogger(__name__)

# Names as llama.cpp spells them; the enum values are read from llama_cpp at run time.
QUANT_TYPES = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}
_SUPPORTED_MODEL_TYPES = ("qwen2", "qwen2_vl", "qwen2_5_vl", "qwen3", "qwen3_moe", "qwen2_moe", "qwen3_vl", "qwen3_5", "qwen3_5_text")
TINY_NAMES = {"qwen2": "tiny-qwen2", "qwen2-vl": "tiny-qwen2-vl", "qwen3.5": "tiny-qwen3.5", "qwen3.5-vl": "tiny-qwen3.5-vl"}
# Qwen3.5 checkpoints: the converter asserts on a checkpoint without multi-token-prediction layers unless told.
_NO_MTP_MODEL_TYPES = ("qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text")
TINY_NAME = TINY_NAMES["qwen2"]


class QwenExportError(ExportError):
    """The Qwen checkpoint could not be exported (bad input, conversion, quantization or verification)."""


def export_qwen(
    out_dir: Path | str,
    hf_dir: Path | str | None = None,
    tiny: bool | str = False,
    quant: str | Sequence[str] = "Q4_K_M",
    converter_dir: Path | None = None,
    pre_tokenizer: str | None = None,
    verify_tokens: int = 4,
    threads: int = 2,
    progress: bool = True,
    hf_out: Path | None = None,
) -> dict[str, Any]:
    """Export a Qwen checkpoint (or the tiny test model) to quantized GGUF file(s); return the manifest.

    ``out_dir`` receives ``<name>-<quant>.gguf`` per asked quant (+
    ``mmproj-<name>-f16.gguf`` for VLMs) and ``manifest.json`` listing them all.
    Existing files of the same names are replaced. ``quant``: one type or a
    list (e.g. ``["F32", "F16", "Q8_0"]``: one conversion, several files).
    ``tiny``: True or "qwen2" for the tiny text model, "qwen2-vl" for the tiny
    vision-language model (text GGUF + mmproj), "qwen3.5" for the tiny Qwen3.5
    (hybrid linear/full attention, interleaved M-RoPE), "qwen3.5-vl" for the tiny
    Qwen3.5 with its vision tower (text GGUF + mmproj). ``hf_out``: also keep
    the tiny Hugging Face checkpoint there (the reference for parity tests and
    the starting point of ``iad-export projector --train-llm``).
    """
    out_dir = Path(out_dir)
    quants = [q.upper() for q in ([quant] if isinstance(quant, str) else quant)]
    bad = [q for q in quants if q not in QUANT_TYPES]
    if bad or not quants:
        raise QwenExportError(f"unknown --quant {', '.join(bad) or '(none)'}; choose from {', '.join(QUANT_TYPES)}")
    if bool(tiny) == (hf_dir is not None):
        raise QwenExportError("give exactly one of --hf-dir DIR or --tiny")
    tiny_arch = ("qwen2" if tiny is True else str(tiny)) if tiny else None
    if tiny_arch is not None and tiny_arch not in TINY_NAMES:
        raise QwenExportError(f"unknown tiny architecture {tiny_arch!r}; choose one of {', '.join(TINY_NAMES)}")
    llama_cpp = _import_llama_cpp()
    ftypes = {q: int(getattr(llama_cpp, QUANT_TYPES[q])) for q in quants}

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-qwen-") as tmp:
        work = Path(tmp)
        steps = tqdm(total=3 + len(quants), desc="iad-export qwen", unit="step", disable=not progress)
        if tiny:
            steps.set_postfix_str("build tiny checkpoint")
            src = work / "hf"
            TINY_BUILDERS[tiny_arch](src)
            name = TINY_NAMES[tiny_arch]
            pre_tokenizer = pre_tokenizer or "qwen2"  # our own tokenizer uses Qwen2's split regex
        else:
            src = Path(hf_dir)  # type: ignore[arg-type]
            _check_hf_dir(src)
            name = src.resolve().name
        config = json.loads((src / "config.json").read_text())
        steps.update()

        base = "f32" if "F32" in quants else "f16"
        steps.set_postfix_str(f"convert to GGUF {base}")
        stage = work / "out"
        stage.mkdir()
        extra = ["--no-mtp"] if _needs_no_mtp(config) else []
        try:
            converted = convert_hf_to_gguf(src, work / f"{name}-{base}.gguf", base, pre_tokenizer=pre_tokenizer,
                                           converter_dir=converter_dir, extra_args=extra)
            mmproj = None
            if _is_vision_language(config):
                mmproj = convert_hf_to_gguf(src, stage / f"mmproj-{name}-f16.gguf", "f16", mmproj=True,
                                            converter_dir=converter_dir)
        except ConversionError as exc:
            raise QwenExportError(str(exc)) from exc
        steps.update()

        model_files: list[tuple[Path, str]] = []
        for q in quants:
            steps.set_postfix_str(f"quantize {q}")
            model_file = stage / f"{name}-{q}.gguf"
            if q == base.upper():
                shutil.copyfile(converted, model_file)
            else:
                quantize_gguf(converted, model_file, ftypes[q], threads=threads)
            model_files.append((model_file, q))
            steps.update()

        steps.set_postfix_str("verify with llama.cpp")
        verify = verify_generation(model_files[0][0], n_tokens=verify_tokens, threads=threads)
        for extra_file, _quant in model_files[1:]:
            verify.setdefault("files", {})[extra_file.name] = verify_generation(extra_file, n_tokens=verify_tokens, threads=threads)["ok"]
        if mmproj is not None:
            verify["image"] = verify_image_chat(model_files[0][0], mmproj, threads=threads)
        steps.update()
        steps.close()

        manifest = _manifest(src if not tiny else None, config, quants[0], ftypes[quants[0]], model_files, mmproj,
                             verify, bool(tiny))
        if tiny:
            manifest["source"]["arch"] = tiny_arch
        (stage / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if hf_out is not None and tiny:
            hf_out = Path(hf_out)
            if hf_out.exists():
                shutil.rmtree(hf_out)
            shutil.copytree(src, hf_out)
        # Model files first, manifest last: a manifest on disk always vouches for files already in place.
        for item in sorted(stage.iterdir()):
            if item.name != MANIFEST_NAME:
                os.replace(item, out_dir / item.name)
        os.replace(stage / MANIFEST_NAME, out_dir / MANIFEST_NAME)
    return manifest


def build_tiny_qwen(out_dir: Path, seed: int = 0, init_std: float | None = None) -> Path:
    """Save a deterministic, randomly initialised tiny Qwen2 causal LM with its tokenizer in ``out_dir``.

    Real Qwen2 architecture (GQA, RoPE, RMSNorm, SwiGLU, tied embeddings) at toy
    size: hidden 64, 2 layers, 4 heads (2 KV heads), ~390-token BPE vocabulary.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from export.tokenizer import build_tiny_tokenizer

    ids = build_tiny_tokenizer(out_dir)
    n_vocab = ids["n_vocab"]
    config = Qwen2Config(
        vocab_size=n_vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        torch_dtype="float32",
    )
    if init_std is not None:  # wider random weights: logits far from flat, for parity tests that compare tokens
        config.initializer_range = init_std
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def build_tiny_qwen2_vl(out_dir: Path, seed: int = 0) -> Path:
    """Save a deterministic random tiny Qwen2-VL (vision tower + projector + Qwen2 text model) in ``out_dir``.

    Real Qwen2-VL architecture at toy size (text hidden 64, 2 layers; vision
    embed 32, depth 3 (the converter maps merger.mlp.2 only with >= 3 blocks), patch 14, 2x2 merge), so the converter writes both the
    language GGUF and the mmproj GGUF that llama.cpp's multimodal path loads.
    """
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from export.tokenizer import build_tiny_tokenizer

    ids = build_tiny_tokenizer(out_dir, vision=True)
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=ids["n_vocab"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-6,
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=True,
            eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None,
        ),
        vision_config=dict(depth=3, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    # The image processor settings of Qwen2-VL (CLIP mean/std), with a small pixel budget for fast tests.
    _write_preprocessor(out_dir, "Qwen2VLImageProcessor", "Qwen2VLProcessor",
                        mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                        patch=14, min_side=56, max_side=112)
    return out_dir


def _write_preprocessor(out_dir: Path, image_processor: str, processor: str, mean: list[float], std: list[float],
                        patch: int, min_side: int, max_side: int) -> None:
    """Write a tiny VL model's ``preprocessor_config.json`` (2x2 merge, pixel budget min_side² .. max_side²)."""
    preprocessor = {
        "image_processor_type": image_processor, "processor_class": processor,
        "image_mean": mean, "image_std": std,
        "patch_size": patch, "temporal_patch_size": 2, "merge_size": 2, "min_pixels": min_side * min_side,
        "max_pixels": max_side * max_side,
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True, "rescale_factor": 1 / 255,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")


def _tiny_qwen35_text(ids: dict[str, int], max_positions: int, init_std: float | None) -> dict[str, Any]:
    """The tiny Qwen3.5 text model's config (one definition for the causal LM and the VL variant's text model)."""
    text: dict[str, Any] = dict(
        vocab_size=ids["n_vocab"], hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=max_positions,
        rms_norm_eps=1e-6, tie_word_embeddings=True, linear_conv_kernel_dim=4, linear_key_head_dim=16,
        linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                         "mrope_section": [3, 3, 2], "mrope_interleaved": True},
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None,
    )
    if init_std is not None:
        text["initializer_range"] = init_std
    return text


def build_tiny_qwen35(out_dir: Path, seed: int = 0, init_std: float | None = None) -> Path:
    """Save a deterministic random tiny Qwen3.5 causal LM (transformers ``Qwen3_5ForCausalLM``) with its tokenizer.

    The real hybrid architecture at toy size: hidden 64, 4 layers (3 gated
    delta-net linear-attention layers, then one full-attention layer), head_dim
    64 with ``partial_rotary_factor`` 0.25 (16 rotary dims) and interleaved
    M-RoPE. ``mrope_section`` must fit the rotary half-dimension (3+3+2 = 8):
    Qwen3.5's default [11, 11, 10] makes llama.cpp abort (``sect_dims <= ne0``).
    """
    import torch
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    from export.tokenizer import build_tiny_tokenizer

    ids = build_tiny_tokenizer(out_dir, answers=True)  # whole-word tokens for the region answers (short answers)
    config = Qwen3_5TextConfig(**_tiny_qwen35_text(ids, max_positions=512, init_std=init_std))
    torch.manual_seed(seed)
    model = Qwen3_5ForCausalLM(config).eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def build_tiny_qwen35_vl(out_dir: Path, seed: int = 0, init_std: float | None = None) -> Path:
    """Save a deterministic random tiny Qwen3.5 vision-language model (``Qwen3_5ForConditionalGeneration``).

    The text model is :func:`build_tiny_qwen35`'s (same sizes, same M-RoPE fit); the vision tower is Qwen3.5's
    (Qwen3-VL style: learned position embeddings, no deepstack) at toy size: hidden 32, 2 blocks, 2 heads,
    patch 16, 2x2 merge, 8x8 position grid. llama.cpp's converter writes the text GGUF (arch ``qwen35``)
    and the mmproj (projector type ``qwen3vl``), which llama.cpp's multimodal path (mtmd) loads.
    """
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    from export.tokenizer import build_tiny_tokenizer

    ids = build_tiny_tokenizer(out_dir, vision=True, answers=True)
    text = _tiny_qwen35_text(ids, max_positions=2048, init_std=init_std)
    config = Qwen3_5Config(
        text_config=text,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3, out_hidden_size=64,
                           num_position_embeddings=64),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3_5ForConditionalGeneration(config).eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    # Qwen3.5's image processor settings (mean/std 0.5, patch 16), with a small pixel budget for fast tests.
    _write_preprocessor(out_dir, "Qwen2VLImageProcessorFast", "Qwen3VLProcessor", mean=[0.5, 0.5, 0.5],
                        std=[0.5, 0.5, 0.5], patch=16, min_side=64, max_side=128)
    return out_dir


TINY_BUILDERS = {"qwen2": build_tiny_qwen, "qwen2-vl": build_tiny_qwen2_vl, "qwen3.5": build_tiny_qwen35,
                 "qwen3.5-vl": build_tiny_qwen35_vl}


def _needs_no_mtp(config: dict) -> bool:
    """Qwen3.5 goes through the converter with ``--no-mtp``: without multi-token-prediction layers the
    converter asserts otherwise, and the assistant does not use them (greedy decoding, no speculation)."""
    types = {str(config.get("model_type", "")), str((config.get("text_config") or {}).get("model_type", ""))}
    return bool(types & set(_NO_MTP_MODEL_TYPES))  # the assistant never uses MTP layers: always left out


def quantize_gguf(src: Path, dst: Path, ftype: int, threads: int = 2) -> None:
    """Quantize ``src`` into ``dst`` with llama.cpp (``llama_model_quantize``)."""
    llama_cpp = _import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), llama_cpp.byref(params))
    if rc != 0 or not dst.is_file():
        raise QwenExportError(f"llama_model_quantize failed on {src.name} (return code {rc})")


def verify_generation(path: Path, n_tokens: int = 4, threads: int = 2, prompt: str = "The part is") -> dict[str, Any]:
    """Load ``path`` with llama.cpp and greedily generate ``n_tokens`` tokens (EOS not honoured).

    Random tiny models often predict EOS first; generation therefore ignores it:
    the check is that the file loads and the forward pass runs, not the text.
    """
    # Through the assistant's own runtime (llama.cpp's C API, extra weight buffers off): llama_cpp.Llama keeps
    # the AMX/repack kernels, which crashed (SIGSEGV in ggml_backend_amx_mul_mat) on Q8_0 files on an AMX CPU.
    return _verify_generation_lowlevel(path, n_tokens, threads, prompt)


def _verify_generation_llama(path: Path, n_tokens: int, threads: int, prompt: str) -> dict[str, Any]:
    """The same check through ``llama_cpp.Llama`` (kept for comparison; not used by the export)."""
    llama_cpp = _import_llama_cpp()
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=threads, n_batch=32, verbose=False, seed=0)
    except Exception as exc:  # llama_cpp raises ValueError/RuntimeError variously
        raise QwenExportError(f"llama.cpp could not load the exported {path.name}: {exc}") from exc
    try:
        prompt_tokens = llm.tokenize(prompt.encode(), add_bos=False, special=False)
        out: list[int] = []
        for tok in llm.generate(prompt_tokens, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            out.append(int(tok))
            if len(out) >= n_tokens:
                break
        text = llm.detokenize(out).decode("utf-8", errors="replace")
        return {
            "ok": len(out) == n_tokens,
            "prompt": prompt,
            "prompt_tokens": [int(t) for t in prompt_tokens],
            "generated_tokens": out,
            "generated_text": text,
            "n_vocab": int(llm.n_vocab()),
            "chat_template": bool(llm.metadata.get("tokenizer.chat_template")),
        }
    finally:
        llm.close()


def _verify_generation_lowlevel(path: Path, n_tokens: int, threads: int, prompt: str) -> dict[str, Any]:
    """:func:`verify_generation` through :class:`edge.assistant.region_lm.RegionLM` (the assistant's own path)."""
    from edge.assistant.region_lm import RegionLM

    try:
        lm = RegionLM(path, n_ctx=64, threads=threads, verify=False)
    except Exception as exc:
        raise QwenExportError(f"llama.cpp could not load the exported {path.name}: {exc}") from exc
    try:
        prompt_tokens = lm.tokenize(prompt, special=False)
        out = lm.generate([prompt_tokens], max_tokens=n_tokens, stop_at_eog=False)
        return {"ok": len(out["tokens"]) == n_tokens, "prompt": prompt, "prompt_tokens": prompt_tokens,
                "generated_tokens": out["tokens"], "generated_text": out["text"], "n_vocab": lm.n_vocab,
                "chat_template": bool(lm.meta("tokenizer.chat_template"))}
    finally:
        lm.close()


def verify_image_chat(model: Path, mmproj: Path, threads: int = 2, size: int = 96) -> dict[str, Any]:
    """Load the language model with its mmproj (llama.cpp's multimodal path) and answer about one image.

    Checks that the projector loads, the image is encoded into tokens and a
    reply is generated; the text itself is meaningless for random weights.
    """
    import base64

    import cv2
    import numpy as np

    llama_cpp = _import_llama_cpp()
    from llama_cpp.llama_chat_format import MTMDChatHandler

    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", image)
    uri = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()
    try:
        handler = MTMDChatHandler(clip_model_path=str(mmproj), verbose=False, use_gpu=False)
        llm = llama_cpp.Llama(model_path=str(model), chat_handler=handler, n_ctx=512, n_threads=threads, verbose=False)
    except Exception as exc:
        raise QwenExportError(f"llama.cpp could not load {model.name} with {mmproj.name}: {exc}") from exc
    try:
        text_only = llm.tokenize(b"<|im_start|>user\nDescribe the defect.<|im_end|>\n<|im_start|>assistant\n", special=True)
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                   {"type": "text", "text": "Describe the defect."}]}],
            max_tokens=2, temperature=0.0,
        )
        prompt_tokens = int(out["usage"]["prompt_tokens"])
        return {"ok": prompt_tokens > len(text_only) and int(out["usage"]["completion_tokens"]) > 0,
                "image_size": size, "prompt_tokens": prompt_tokens, "text_prompt_tokens": len(text_only)}
    finally:
        llm.close()


def _manifest(src: Path | None, config: dict, quant: str, ftype: int, model_files: list[tuple[Path, str]],
              mmproj: Path | None, verify: dict, tiny: bool) -> dict[str, Any]:
    import gguf

    files = {f.name: _file_entry(f, "model", q) for f, q in model_files}
    if mmproj is not None:
        files[mmproj.name] = _file_entry(mmproj, "mmproj", "F16")
    return {
        "format": MANIFEST_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": _source_entry(src) if src is not None else {"tiny": True, "seed": 0, "path": None, "sha256": None},
        "architecture": (config.get("architectures") or ["?"])[0],
        "model_type": config.get("model_type"),
        "quant": quant,
        "llama_ftype": ftype,
        "files": files,
        "versions": {"llama_cpp_python": llama_cpp_python_version(), "gguf": getattr(gguf, "__version__", None)
                     or _dist_version("gguf")},
        "verify": verify,
        "tiny": tiny,
    }


def _file_entry(path: Path, role: str, quant: str) -> dict[str, Any]:
    header = read_gguf_header(path)
    return {"role": role, "quant": quant, "bytes": path.stat().st_size,
            "sha256": sha256_file(path), "gguf_version": header["version"], "tensors": header["n_tensors"]}


def _source_entry(src: Path) -> dict[str, Any]:
    """Identify the checkpoint: sha256 over (relative name, file sha256) of its files, sorted."""
    import hashlib

    digest = hashlib.sha256()
    names = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    for p in tqdm(names, desc="hash checkpoint", unit="file", leave=False, disable=len(names) < 3):
        digest.update(f"{p.relative_to(src).as_posix()}\0{sha256_file(p)}\n".encode())
    return {"path": str(src.resolve()), "sha256": digest.hexdigest(), "files": len(names)}


def _check_hf_dir(src: Path) -> None:
    if not src.exists():
        raise QwenExportError(f"--hf-dir {src}: no such folder (nothing is downloaded; give a local copy of the checkpoint)")
    if not src.is_dir():
        raise QwenExportError(f"--hf-dir {src}: not a folder; give the Hugging Face checkpoint folder (config.json + weights)")
    cfg = src / "config.json"
    if not cfg.is_file():
        raise QwenExportError(f"--hf-dir {src}: no config.json; this is not a Hugging Face checkpoint folder")
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise QwenExportError(f"{cfg}: not valid JSON ({exc})") from exc
    model_type = str(config.get("model_type", ""))
    if not model_type.startswith(("qwen2", "qwen3")):
        raise QwenExportError(f"{cfg}: model_type {model_type!r} is not a Qwen2/Qwen2.5/Qwen3 model (supported: {', '.join(_SUPPORTED_MODEL_TYPES)})")
    if not any(src.glob("*.safetensors")) and not any(src.glob("*.bin")):
        raise QwenExportError(f"--hf-dir {src}: no *.safetensors or *.bin weights")


def _is_vision_language(config: dict) -> bool:
    return "vision_config" in config


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _import_llama_cpp():  # type: ignore[no-untyped-def]
    try:
        import llama_cpp
    except ImportError as exc:
        raise QwenExportError("llama-cpp-python is not installed (pip install 'iad-edge[assistant]'); it quantizes and verifies the GGUF") from exc
    return llama_cpp

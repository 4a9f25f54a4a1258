"""``iad-export qwen``: Hugging Face Qwen checkpoint (or ``--tiny``) -> quantized, verified GGUF + manifest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from export.qwen import QUANT_TYPES, TINY_NAMES


def _quants(text: str) -> list[str]:
    quants = [q.strip().upper() for q in text.split(",") if q.strip()]
    bad = [q for q in quants if q not in QUANT_TYPES]
    if bad or not quants:
        raise argparse.ArgumentTypeError(f"unknown quant {', '.join(bad) or text!r}; choose from {', '.join(QUANT_TYPES)}")
    return quants


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "qwen",
        help="Qwen checkpoint -> quantized GGUF for the assistant (verified with llama.cpp, with a manifest).",
        description=(
            "Convert a local Hugging Face Qwen2/Qwen2.5/Qwen3 checkpoint with llama.cpp's converter, quantize it "
            "with llama.cpp, load it and generate a few tokens, and write manifest.json (iad-gguf/1). "
            "Vision-language checkpoints also get their mmproj GGUF (f16). Nothing is downloaded from a hub."
        ),
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf-dir", type=Path, help="Local Hugging Face checkpoint folder (config.json, tokenizer, *.safetensors).")
    src.add_argument("--tiny", action="store_true", help="A deterministic random tiny Qwen2 with a small tokenizer (tests, demo).")
    src.add_argument("--tiny-vl", action="store_true", help="A deterministic random tiny Qwen2-VL: text GGUF + mmproj (tests of the image path).")
    src.add_argument("--tiny-arch", choices=list(TINY_NAMES),
                     help="A deterministic random tiny model of this architecture (qwen2, qwen2-vl, qwen3.5; "
                     "qwen3.5-vl: Qwen3.5 with its vision tower, text GGUF + mmproj).")
    parser.add_argument("--quant", default="Q4_K_M", type=_quants,
                        help=f"Quantization type, or several comma-separated ({', '.join(QUANT_TYPES)}; default Q4_K_M).")
    parser.add_argument("--keep-hf", type=Path, default=None,
                        help="With a tiny model: also keep its Hugging Face checkpoint in this folder (for iad-export projector).")
    parser.add_argument("--out", type=Path, required=True, help="Output folder for the GGUF file(s) and manifest.json.")
    parser.add_argument("--converter", type=Path, default=None,
                        help="llama.cpp checkout holding convert_hf_to_gguf.py (default: from the llama-cpp-python sdist, cached).")
    parser.add_argument("--pre-tokenizer", default=None,
                        help="llama.cpp pre-tokenizer name to record if the tokenizer's hash is unknown (e.g. qwen2); only when you know it matches.")
    parser.add_argument("--threads", type=int, default=2, help="Threads for quantization and the verification run.")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from export.qwen import export_qwen

    manifest = export_qwen(
        args.out,
        hf_dir=args.hf_dir,
        tiny=args.tiny_arch or ("qwen2-vl" if args.tiny_vl else args.tiny),
        quant=args.quant,
        hf_out=args.keep_hf,
        converter_dir=args.converter,
        pre_tokenizer=args.pre_tokenizer,
        threads=args.threads,
    )
    for name, entry in manifest["files"].items():
        print(f"wrote {args.out / name} ({entry['role']}, {entry['quant']}, {entry['bytes'] / 2**20:.2f} MiB, sha256 {entry['sha256'][:12]}…)")
    print(f"wrote {args.out / 'manifest.json'}")
    if args.keep_hf is not None and manifest.get("tiny"):
        print(f"wrote {args.keep_hf} (the tiny Hugging Face checkpoint)")
    verify = manifest["verify"]
    print(f"verify: llama.cpp loaded it and generated {len(verify['generated_tokens'])} tokens: {json.dumps(verify['generated_text'])}")
    if "image" in verify:
        print(f"verify: with the mmproj, a {verify['image']['image_size']}px image became "
              f"{verify['image']['prompt_tokens'] - verify['image']['text_prompt_tokens']} prompt tokens; answer generated")
    return 0

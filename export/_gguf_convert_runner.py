"""Child-process entry that runs llama.cpp's ``convert_hf_to_gguf.py`` with one patch.

Why a child process: the converter imports its own copy of ``gguf`` (gguf-py of
the same llama.cpp version) and torch; keeping that out of the calling process
avoids mixing two ``gguf`` modules. The patch: llama.cpp identifies a BPE
pre-tokenizer by hashing how it tokenizes a fixed text and refuses unknown
hashes. A tokenizer we built ourselves (the tiny test model) has an unknown
hash by construction, so ``--pre-tokenizer NAME`` supplies the name to record
*only* when the hash is unknown; known tokenizers are never overridden.

Usage: python _gguf_convert_runner.py --converter DIR [--pre-tokenizer NAME] -- <converter args>
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("--converter", required=True, type=Path)
    parser.add_argument("--pre-tokenizer", default=None)
    args = parser.parse_args(argv[:split])
    converter_args = argv[split + 1 :]

    sys.path.insert(0, str(args.converter / "gguf-py"))
    sys.path.insert(0, str(args.converter))
    if args.pre_tokenizer:
        from conversion.base import TextModel  # type: ignore[import-not-found]

        original = TextModel.get_vocab_base_pre
        fallback = args.pre_tokenizer

        def get_vocab_base_pre(self, tokenizer):  # type: ignore[no-untyped-def]
            try:
                return original(self, tokenizer)
            except NotImplementedError:
                print(f"iad-export: unknown BPE pre-tokenizer hash; recording '{fallback}' as asked", file=sys.stderr)
                return fallback

        TextModel.get_vocab_base_pre = get_vocab_base_pre

    sys.argv = [str(args.converter / "convert_hf_to_gguf.py"), *converter_args]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()

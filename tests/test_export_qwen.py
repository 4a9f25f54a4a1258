"""iad-export qwen: tiny Qwen2 -> GGUF -> Q8_0 / Q4_K_M -> llama.cpp loads and generates; manifest; bad inputs."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'iad-edge[assistant]')")

import llama_cpp

from edge.assistant.gguf_check import open_llama, sha256_file, verify_gguf
from edge.errors import ModelLoadError
from export.qwen import QwenExportError, build_tiny_qwen, export_qwen


def _file_type(path: Path) -> int:
    """general.file_type as written in the GGUF (what llama.cpp reports as the quant)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields["general.file_type"]
    return int(field.parts[field.data[0]][0])


def test_tiny_q8_0_manifest_matches_files(tiny_gguf_dir: Path, tiny_gguf_path: Path) -> None:
    manifest = json.loads((tiny_gguf_dir / "manifest.json").read_text())
    assert manifest["format"] == "iad-gguf/1"
    assert manifest["architecture"] == "Qwen2ForCausalLM"
    assert manifest["quant"] == "Q8_0"
    assert manifest["llama_ftype"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    entry = manifest["files"][tiny_gguf_path.name]
    assert entry["role"] == "model"
    assert entry["bytes"] == tiny_gguf_path.stat().st_size
    assert entry["sha256"] == sha256_file(tiny_gguf_path)
    assert manifest["versions"]["llama_cpp_python"] == llama_cpp.__version__
    assert manifest["verify"]["ok"] is True
    assert len(manifest["verify"]["generated_tokens"]) == 4
    assert manifest["verify"]["chat_template"] is True
    assert _file_type(tiny_gguf_path) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    # Only the final artifacts are left (no f16 intermediate, no staging folder).
    assert sorted(p.name for p in tiny_gguf_dir.iterdir()) == ["manifest.json", tiny_gguf_path.name]
    assert verify_gguf(tiny_gguf_path)["sha256"] == entry["sha256"]


def test_tiny_gguf_generates_and_chats(tiny_gguf_path: Path) -> None:
    llm = open_llama(tiny_gguf_path, n_ctx=128, n_threads=1, verbose=False)
    try:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": "Explain the defect."}], max_tokens=4, temperature=0.0
        )
        assert out["choices"][0]["message"]["role"] == "assistant"
        assert out["usage"]["prompt_tokens"] > 5  # the ChatML template was applied
    finally:
        llm.close()


def test_tiny_q4_k_m_loads_and_generates(tmp_path: Path) -> None:
    manifest = export_qwen(tmp_path, tiny=True, quant="Q4_K_M", progress=False)
    path = tmp_path / "tiny-qwen2-Q4_K_M.gguf"
    assert manifest["quant"] == "Q4_K_M" and path.is_file()
    assert _file_type(path) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M == manifest["llama_ftype"]
    assert manifest["verify"]["ok"] and len(manifest["verify"]["generated_tokens"]) == 4


def test_hf_dir_export_matches_transformers(tmp_path: Path) -> None:
    """A checkpoint folder goes through --hf-dir; llama.cpp tokenizes and predicts like transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = build_tiny_qwen(tmp_path / "hf")
    manifest = export_qwen(tmp_path / "out", hf_dir=hf, quant="F16", pre_tokenizer="qwen2", progress=False)
    assert manifest["source"]["path"] == str(hf.resolve())
    assert len(manifest["source"]["sha256"]) == 64
    tok = AutoTokenizer.from_pretrained(str(hf))
    model = AutoModelForCausalLM.from_pretrained(str(hf)).eval()
    llm = open_llama(tmp_path / "out" / "hf-F16.gguf", n_ctx=64, n_threads=1, verbose=False)
    try:
        for text in ["The part is NG.", "A scratch, 12 mm long!", "severity: high\n\nlocation"]:
            ids = tok(text)["input_ids"]
            assert llm.tokenize(text.encode(), add_bos=False) == ids, text
            greedy_hf = []
            seq = list(ids)
            with torch.no_grad():
                for _ in range(5):
                    nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                    greedy_hf.append(nxt)
                    seq.append(nxt)
            greedy_llama = []
            for t in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
                greedy_llama.append(int(t))
                if len(greedy_llama) == 5:
                    break
            assert greedy_llama == greedy_hf, text
    finally:
        llm.close()


def test_unknown_pretokenizer_is_a_clear_error(tmp_path: Path) -> None:
    hf = build_tiny_qwen(tmp_path / "hf")
    out = tmp_path / "out"
    with pytest.raises(QwenExportError, match="pre-tokenizer"):
        export_qwen(out, hf_dir=hf, quant="Q8_0", progress=False)
    assert list(out.iterdir()) == []  # nothing partial left behind


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such folder"),
        ("file", "not a folder"),
        ("no_config", "no config.json"),
        ("not_qwen", "not a Qwen2/Qwen2.5/Qwen3 model"),
        ("no_weights", "no \\*.safetensors"),
    ],
)
def test_bad_hf_dir_is_rejected_without_output(tmp_path: Path, setup: str, message: str) -> None:
    src = tmp_path / "ckpt"
    if setup == "file":
        src.write_text("x")
    elif setup != "missing":
        src.mkdir()
        if setup == "not_qwen":
            (src / "config.json").write_text(json.dumps({"model_type": "llama"}))
        elif setup == "no_weights":
            (src / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    out = tmp_path / "out"
    with pytest.raises(QwenExportError, match=message):
        export_qwen(out, hf_dir=src, quant="Q8_0", progress=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_bad_arguments() -> None:
    with pytest.raises(QwenExportError, match="unknown --quant"):
        export_qwen("/nonexistent", tiny=True, quant="Q3_X")
    with pytest.raises(QwenExportError, match="exactly one"):
        export_qwen("/nonexistent", hf_dir="/x", tiny=True)


def test_cli_missing_dir_exits_1_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.cli import main

    rc = main(["qwen", "--hf-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "iad-export qwen: error: --hf-dir" in err and "no such folder" in err
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_cli_command_reports_error_for_missing_dir(tmp_path: Path) -> None:
    from export.commands import qwen as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["qwen", "--hf-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quant", "q8_0"])
    assert args.quant == ["Q8_0"]  # one or more quants, comma-separated, normalised to upper case
    assert parser.parse_args(["qwen", "--tiny", "--out", "o", "--quant", "f16,q8_0"]).quant == ["F16", "Q8_0"]
    with pytest.raises(SystemExit):  # an unknown quant is refused by the parser
        parser.parse_args(["qwen", "--tiny", "--out", "o", "--quant", "q3_x"])
    with pytest.raises(QwenExportError, match="no such folder"):
        args.func(args)


# --- corrupt files ----------------------------------------------------------------------------


def _copy_model(tiny_gguf_dir: Path, dest: Path) -> Path:
    shutil.copytree(tiny_gguf_dir, dest)
    return dest / "tiny-qwen2-Q8_0.gguf"


def test_truncated_gguf_is_refused(tiny_gguf_dir: Path, tmp_path: Path) -> None:
    path = _copy_model(tiny_gguf_dir, tmp_path / "m")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="differs from the manifest"):
        verify_gguf(path)
    # Without a manifest, llama.cpp's own refusal also comes out as ModelLoadError.
    (path.parent / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match="llama.cpp could not load it"):
        open_llama(path, n_ctx=64, verbose=False)


def test_flipped_byte_fails_sha256(tiny_gguf_dir: Path, tmp_path: Path) -> None:
    path = _copy_model(tiny_gguf_dir, tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        open_llama(path, n_ctx=64, verbose=False)


@pytest.mark.parametrize(("content", "message"), [(b"", "truncated or empty"), (b"PK\x03\x04" + b"\0" * 60, "not a GGUF file")])
def test_garbage_gguf_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        open_llama(path, verbose=False)


def test_file_not_in_manifest(tiny_gguf_dir: Path, tmp_path: Path) -> None:
    path = _copy_model(tiny_gguf_dir, tmp_path / "m")
    renamed = path.with_name("other.gguf")
    path.rename(renamed)
    with pytest.raises(ModelLoadError, match="not listed in its manifest"):
        verify_gguf(renamed)

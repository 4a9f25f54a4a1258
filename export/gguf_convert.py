"""Hugging Face checkpoint -> GGUF (f16/f32) with llama.cpp's own converter.

Why not vendor the converter: since llama.cpp split ``convert_hf_to_gguf.py``
into a ``conversion/`` package (~100 files) plus its own ``gguf-py``, a copy in
this repo would be a large fork to keep in step. Instead we take the converter
from the *same* llama-cpp-python source distribution as the installed runtime
(so converter, gguf-py and llama.cpp agree on the format), extract only the
converter files once into a cache folder, and run it in a child process.

Where the converter comes from, in order:
1. ``converter_dir`` argument / ``IAD_LLAMA_CPP_DIR``: a llama.cpp checkout
   (the folder holding ``convert_hf_to_gguf.py``).
2. The cache ``$XDG_CACHE_HOME/iad-edge/llama.cpp-<version>/`` (or ``~/.cache``).
3. The llama-cpp-python sdist of the installed version, fetched with
   ``pip download`` (served from pip's cache when it built the wheel), from
   which ``vendor/llama.cpp/{convert_hf_to_gguf.py,conversion,gguf-py,LICENSE}``
   are extracted into that cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from export.errors import ExportError

log = logging.getLogger(__name__)

# The llama-cpp-python release whose converter we use when the runtime is not installed.
PINNED_LLAMA_CPP_PYTHON = "0.3.36"
_CONVERTER_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
_RUNNER = Path(__file__).with_name("_gguf_convert_runner.py")


class ConversionError(ExportError):
    """The checkpoint could not be turned into a GGUF file."""


def llama_cpp_python_version() -> str:
    """Version of the installed llama-cpp-python, or the pinned one when it is absent."""
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:  # not installed: use the pin
        return PINNED_LLAMA_CPP_PYTHON


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iad-edge"


def _is_converter_dir(path: Path) -> bool:
    return (path / "convert_hf_to_gguf.py").is_file()


def find_converter(converter_dir: Path | None = None, fetch: bool = True) -> Path:
    """Return the folder holding llama.cpp's ``convert_hf_to_gguf.py`` (see module doc for the order)."""
    explicit = converter_dir or (Path(os.environ["IAD_LLAMA_CPP_DIR"]) if os.environ.get("IAD_LLAMA_CPP_DIR") else None)
    if explicit is not None:
        if not _is_converter_dir(explicit):
            raise ConversionError(f"{explicit}: no convert_hf_to_gguf.py here; point --converter at a llama.cpp checkout")
        return explicit
    version = llama_cpp_python_version()
    cached = _cache_root() / f"llama.cpp-{version}"
    if _is_converter_dir(cached):
        return cached
    if not fetch:
        raise ConversionError(f"llama.cpp converter not found in {cached}")
    return _fetch_converter(version, cached)


def _fetch_converter(version: str, dest: Path) -> Path:
    """Download the llama-cpp-python sdist with pip and extract just the converter into ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        log.info("fetching llama.cpp's converter from the llama-cpp-python %s sdist (pip download)", version)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={version}", "-d", str(tmp_path), "-q"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(tmp_path.glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            raise ConversionError(
                f"could not download the llama-cpp-python {version} sdist for its converter "
                f"({proc.stderr.strip()[-300:] or 'no file'}); set IAD_LLAMA_CPP_DIR or --converter to a llama.cpp checkout"
            )
        staging = tmp_path / "llama.cpp"
        with tarfile.open(sdists[0]) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/", 3)  # llama_cpp_python-X/vendor/llama.cpp/<rest>
                if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                    continue
                rest = parts[3]
                if not any(rest == m or (m.endswith("/") and rest.startswith(m)) for m in _CONVERTER_MEMBERS):
                    continue
                if not (member.isfile() or member.isdir()):
                    continue
                member.name = rest
                try:
                    tar.extract(member, staging, filter="data")  # refuses links/absolute paths
                except TypeError:  # Python < 3.10.12 / 3.11.4: no extraction filters; names were vetted above
                    if member.issym() or member.islnk() or rest.startswith("/") or ".." in rest.split("/"):
                        continue
                    tar.extract(member, staging)
        if not _is_converter_dir(staging):
            raise ConversionError(f"the llama-cpp-python {version} sdist has no vendor/llama.cpp/convert_hf_to_gguf.py")
        try:
            os.replace(staging, dest)
        except OSError:
            if not _is_converter_dir(dest):  # another process won the race: fine if it finished
                raise
    return dest


def convert_hf_to_gguf(
    hf_dir: Path,
    out_file: Path,
    outtype: str = "f16",
    mmproj: bool = False,
    pre_tokenizer: str | None = None,
    converter_dir: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Path:
    """Run llama.cpp's converter on ``hf_dir`` and write ``out_file``.

    ``pre_tokenizer``: name llama.cpp should record when the converter does not
    recognise the tokenizer's pre-tokenizer hash (our own tiny tokenizer); a
    recognised hash always wins. ``mmproj`` exports the vision projector of a
    VLM instead of the language model.
    """
    converter = find_converter(converter_dir)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(_RUNNER), "--converter", str(converter)]
    if pre_tokenizer:
        cmd += ["--pre-tokenizer", pre_tokenizer]
    cmd += ["--", str(hf_dir), "--outfile", str(out_file), "--outtype", outtype]
    if mmproj:
        cmd.append("--mmproj")
    cmd += list(extra_args)
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # use the converter's own gguf-py, matching its code
    log.info("converting %s -> %s (%s%s)", hf_dir, out_file.name, outtype, ", mmproj" if mmproj else "")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        hint = ""
        if "pre-tokenizer was not recognized" in proc.stdout:
            hint = " (the tokenizer's pre-tokenizer is unknown to this llama.cpp; pass --pre-tokenizer NAME, e.g. qwen2, if you know it matches)"
        raise ConversionError(f"llama.cpp converter failed on {hf_dir}{hint}:\n{tail}")
    written = _written_file(out_file, mmproj)
    if written is None:
        raise ConversionError(f"llama.cpp converter reported success but wrote no {out_file}")
    return written


def _written_file(out_file: Path, mmproj: bool) -> Path | None:
    """The converter prefixes ``mmproj-`` to the name for projectors; find what it wrote."""
    candidates = [out_file, out_file.with_name(f"mmproj-{out_file.name}")] if mmproj else [out_file]
    for cand in candidates:
        if cand.is_file():
            return cand
    return None


def remove_quietly(path: Path) -> None:
    """Delete a file or folder if present (cleanup of partial outputs)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()

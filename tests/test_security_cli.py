"""The production commands refuse untrusted files before loading anything (real `iad-edge` processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fixtures.expert import write_recipe


def _cli(*args: str, env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def _station(tmp_path: Path, tiny_expert_dir: Path, tiny_gguf_dir: Path) -> tuple[Path, Path]:
    """A station folder with its own copies of the expert and the GGUF (inside the recipe's folder)."""
    station = tmp_path / "station"
    shutil.copytree(tiny_expert_dir, station / "engines" / "expert")
    shutil.copytree(tiny_gguf_dir, station / "engines" / "gguf")
    return station, next((station / "engines" / "gguf").glob("*.gguf"))


def test_assistant_refuses_a_recipe_path_outside_the_allowed_roots(tmp_path, tiny_expert_dir, tiny_gguf_dir) -> None:
    station, gguf = _station(tmp_path, tiny_expert_dir, tiny_gguf_dir)
    outside = tmp_path / "elsewhere"
    recipe = write_recipe(station, station / "engines" / "expert", {
        "assistant": {"enabled": True, "model": str(gguf), "spool": str(outside / "spool")},
    })
    proc = _cli("assistant", str(recipe), "--no-mqtt", "--max-jobs", "0",
                env_extra={"IAD_ALLOWED_ROOTS": "/var/lib/iad"}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"assistant.spool: {outside / 'spool'} resolves to" in proc.stderr and "outside the allowed roots" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not outside.exists()  # nothing was created outside the roots


def test_assistant_refuses_a_tampered_gguf_before_llama_cpp_sees_it(tmp_path, tiny_expert_dir, tiny_gguf_dir) -> None:
    station, gguf = _station(tmp_path, tiny_expert_dir, tiny_gguf_dir)
    data = bytearray(gguf.read_bytes())
    data[-7] ^= 0x10
    gguf.write_bytes(bytes(data))
    recipe = write_recipe(station, station / "engines" / "expert", {
        "assistant": {"enabled": True, "model": str(gguf), "spool": "spool"},
    })
    proc = _cli("assistant", str(recipe), "--no-mqtt", "--max-jobs", "0",
                env_extra={"IAD_ALLOWED_ROOTS": "/var/lib/iad"}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"{gguf}: sha256" in proc.stderr and "differs from the manifest" in proc.stderr
    assert "llama_model_loader" not in proc.stderr  # llama.cpp never opened it

"""Bad input to `iad-export dinov2`: a specific message, exit code 1, nothing written."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from export.cli import main as export_main
from export.dinov2 import export_dinov2
from export.errors import ParityError
from export.hub_keys import hf_to_hub


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = export_main(["dinov2", *args])
    return rc, capsys.readouterr().err


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} was created by a failed export"
    assert not [p.name for p in out.parent.iterdir() if ".export-" in p.name], "staging folder left behind"


def test_missing_checkpoint_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "dinov2_vits14_pretrain.pth"
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(missing), "--out", str(out))
    assert rc == 1
    assert f"checkpoint {missing} does not exist" in err and "nothing is downloaded" in err
    assert "Traceback" not in err
    _assert_nothing_written(out)


def test_folder_without_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dinov2-small"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(folder), "--out", str(out))
    assert rc == 1 and f"{folder} is a folder but has no config.json" in err
    _assert_nothing_written(out)


def test_folder_of_another_model_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(folder), "--out", str(out))
    assert rc == 1 and "model_type is 'bert'" in err
    _assert_nothing_written(out)


def test_garbage_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "dinov2_vits14_pretrain.pth"
    garbage.write_bytes(b"this is not a checkpoint\n" * 10)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(garbage), "--out", str(out))
    assert rc == 1 and f"{garbage} is not a PyTorch state-dict checkpoint" in err
    _assert_nothing_written(out)


class _Payload:
    """A pickle that would create a file if it were ever unpickled with code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_pickle_with_code_is_refused_not_executed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"patch_embed.proj.weight": _Payload(marker)}, path, pickle_module=pickle)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(path), "--out", str(out))
    assert rc == 1 and "weights_only=True" in err
    assert not marker.exists()
    _assert_nothing_written(out)


def test_state_dict_with_unexpected_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str], export_make_hf_model: Any) -> None:
    hub = hf_to_hub(export_make_hf_model().state_dict())
    hub["blocks.0.attn.relative_bias"] = torch.zeros(4)
    hub["head.weight"] = torch.zeros(2, 2)
    path = tmp_path / "wrong_keys.pth"
    torch.save(hub, path)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(path), "--out", str(out))
    assert rc == 1 and "2 unexpected key(s)" in err and "head.weight" in err
    _assert_nothing_written(out)


def test_state_dict_of_another_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}, path)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(path), "--out", str(out))
    assert rc == 1 and "not a DINOv2 torch-hub state dict" in err and "conv1.weight" in err
    _assert_nothing_written(out)


def test_state_dict_missing_a_tensor(tmp_path: Path, capsys: pytest.CaptureFixture[str], export_make_hf_model: Any) -> None:
    hub = hf_to_hub(export_make_hf_model().state_dict())
    del hub["blocks.1.ls2.gamma"]
    path = tmp_path / "incomplete.pth"
    torch.save(hub, path)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--checkpoint", str(path), "--out", str(out))
    assert rc == 1 and "encoder.layer.1.layer_scale2.lambda1" in err
    _assert_nothing_written(out)


def test_resolution_not_multiple_of_14(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc, err = _run(capsys, "--tiny", "--resolution", "225", "--out", str(out))
    assert rc == 1 and "multiple of the patch size 14 (got 225; e.g. 224)" in err
    _assert_nothing_written(out)


def test_tiny_and_checkpoint_together_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        export_main(["dinov2", "--tiny", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_parity_failure_writes_nothing_and_keeps_previous_export(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    export_dinov2(out, tiny=True, resolution=28)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ParityError, match="above the tolerance"):
        export_dinov2(out, tiny=True, resolution=28, seed=3, tolerance=-1.0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p.name for p in tmp_path.iterdir() if ".export-" in p.name]

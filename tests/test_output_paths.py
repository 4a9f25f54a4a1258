"""Every command x every bad output path: one line naming the path, exit 1, nothing written anywhere.

The bad paths: an existing file where a folder is expected (or a folder where a
file is expected), a folder the process cannot write in (made immutable with
chattr as root, read-only otherwise: the kernel refuses both), and a parent
folder that cannot be created because a file is in the way. The checks run
before any work, so nothing — bank, generated thresholds, partial report —
may appear; a good path then works and leaves files group-readable (0640).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import cv2
import pytest

from edge.cli import main
from tests.fixtures.expert import synthetic_frames, write_recipe


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody can create files in (immutable for root, read-only otherwise)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("running as root without chattr +i support: no way to make a folder unwritable")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        yield folder
        folder.chmod(0o755)


@pytest.fixture
def workspace(tmp_path, tiny_expert_dir, tiny_bank_path):
    """Recipe + bank + a few good images + one image: the inputs every command below needs."""
    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = write_recipe(tmp_path, tiny_expert_dir, name="line3.yaml")
    good = tmp_path / "good"
    good.mkdir()
    for frame in synthetic_frames(4, defect=None, start=7000):
        cv2.imwrite(str(good / f"{frame.name}.png"), frame.image)
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), synthetic_frames(1, defect="scratch")[0].image)
    mask = tmp_path / "mask.png"
    m = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE) * 0
    m[100:120, 100:140] = 255
    cv2.imwrite(str(mask), m)
    (tmp_path / "notes.txt").write_text("my notes\n")
    return tmp_path, recipe, good, image, mask


# command -> (argv builder given the output path, kind of output)
def _commands(recipe, good, image, mask, dataset):
    return {
        "calibrate --report": (lambda out: ["calibrate", str(recipe), "--good", str(good), "--no-progress", "--report", out], "dir"),
        "calibrate --bank": (lambda out: ["calibrate", str(recipe), "--good", str(good), "--no-progress", "--bank", out], "file"),
        "inspect --out": (lambda out: ["inspect", str(recipe), str(image), "--out", out], "dir"),
        "eval --out": (lambda out: ["eval", str(recipe), str(dataset), "--out", out, "--no-progress"], "dir"),
        "make-dataset --out": (lambda out: ["make-dataset", "--synthetic", "--out", out, "--categories", "1"], "dir"),
        "explain --out": (lambda out: ["explain", str(recipe), str(image), "--out", out], "file"),
        "generate --out": (lambda out: ["generate", str(image), "--mask", str(mask), "--type", "crack", "--out", out], "file"),
        "demo --out": (lambda out: ["demo", "--no-mqtt", "--no-assistant", "--frames", "1", "--out", out], "dir"),
    }


COMMANDS = ["calibrate --report", "calibrate --bank", "inspect --out", "eval --out", "make-dataset --out",
            "explain --out", "generate --out", "demo --out"]
BAD = ["wrong_kind", "unwritable", "parent_is_a_file"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_output_path_is_one_line_exit_1_and_nothing_written(command, bad, workspace, unwritable, eval_dataset_dir,
                                                                 capsys):
    root, recipe, good, image, mask = workspace
    build, kind = _commands(recipe, good, image, mask, eval_dataset_dir)[command]
    if bad == "wrong_kind":
        out = root / "notes.txt" if kind == "dir" else good  # a file where a folder goes / a folder where a file goes
    elif bad == "unwritable":
        out = unwritable / ("report" if kind == "dir" else "out.png")
    else:
        out = root / "notes.txt" / "sub" / ("report" if kind == "dir" else "out.png")
    before = _tree(root)
    code = main(build(str(out)))
    err = capsys.readouterr().err
    assert code == 1
    problem = [line for line in err.splitlines() if "error:" in line]
    assert len(problem) == 1 and str(out) in problem[0], err
    assert "Traceback" not in err
    assert _tree(root) == before  # no bank, no generated file, no partial report, no staging leftovers
    assert (root / "notes.txt").read_text() == "my notes\n"


def test_calibrate_writes_its_outputs_as_one_group_readable_set(workspace, capsys):
    root, recipe, good, _, _ = workspace
    assert main(["calibrate", str(recipe), "--good", str(good), "--no-progress", "--bank", str(root / "new" / "b.npz")]) == 0
    written = [root / "new" / "b.npz", root / "line3.generated.yaml", root / "line3.calibration" / "calibration_report.md"]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path  # docs/deploy.md: group iad reads them
    assert not [p for p in root.rglob(".*") if p.name.startswith((".b.npz", ".line3", ".iad-write-test"))]
    # a second run replaces its own earlier report folder without --overwrite
    assert main(["calibrate", str(recipe), "--good", str(good), "--no-progress", "--bank", str(root / "new" / "b.npz")]) == 0


def test_inspect_out_policy_same_as_eval(workspace, capsys):
    """A folder with someone else's files is refused without --overwrite; inspect's own earlier output is replaced."""
    root, recipe, _, image, _ = workspace
    other = root / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["inspect", str(recipe), str(image), "--out", str(other)]) == 1
    assert "folder exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    out = root / "out"
    assert main(["inspect", str(recipe), str(image), "--out", str(out)]) == 0
    assert main(["inspect", str(recipe), str(image), "--out", str(out)]) == 0  # its own output: replaced
    assert sorted(p.name for p in out.iterdir()) == ["part.json", "part.png", "summary.json"]
    assert main(["inspect", str(recipe), str(image), "--out", str(other), "--overwrite"]) == 0
    assert not (other / "keep.txt").exists()


def test_run_refuses_an_archive_or_outbox_it_cannot_write_before_the_line_starts(workspace, capsys):
    root, recipe, _, _, _ = workspace
    text = recipe.read_text().replace("path: archive", f"path: {root / 'notes.txt' / 'archive'}")
    recipe.write_text(text)
    before = _tree(root)
    assert main(["run", str(recipe), "--no-mqtt", "--max-frames", "1"]) == 1
    err = capsys.readouterr().err
    assert "archive.path" in err and "notes.txt is a file" in err and "Traceback" not in err
    assert _tree(root) == before


def test_schema_write_to_a_bad_path_is_one_line(workspace, capsys):
    root = workspace[0]
    assert main(["schema", "--write", str(root / "notes.txt" / "recipe.schema.json")]) == 1
    assert "--write" in capsys.readouterr().err

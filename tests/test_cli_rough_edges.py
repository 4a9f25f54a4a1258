"""The CLI a newcomer meets: descriptions, one MQTT override rule, honest notes, counted nouns, progress, summaries."""

from __future__ import annotations

import stat

import cv2
import pytest

from edge.cli import build_parser, main
from tests.fixtures.expert import synthetic_frames, write_recipe


def _subparser(name):
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


@pytest.mark.parametrize("command", ["inspect", "explain", "assistant", "calibrate", "eval", "check", "run", "demo"])
def test_every_command_has_a_description(command):
    assert (_subparser(command).description or "").strip()


def test_eval_usage_shows_its_required_arguments():
    usage = _subparser("eval").format_usage()
    assert "iad-edge eval RECIPE DATASET --out DIR" in usage and "--compare A.json B.json" in usage


@pytest.mark.parametrize("command", ["run", "assistant", "demo"])
def test_mqtt_host_and_port_come_from_the_environment_unless_given(command, monkeypatch):
    monkeypatch.setenv("IAD_MQTT_HOST", "broker.plant")
    monkeypatch.setenv("IAD_MQTT_PORT", "8883")
    args = build_parser().parse_args([command] + (["r.yaml"] if command != "demo" else []))
    assert (args.mqtt_host, args.mqtt_port) == ("broker.plant", 8883)
    args = build_parser().parse_args([command] + (["r.yaml"] if command != "demo" else []) + ["--mqtt-host", "h2"])
    assert args.mqtt_host == "h2"


def test_make_dataset_counts_in_the_singular(tmp_path, capsys):
    assert main(["make-dataset", "--synthetic", "--out", str(tmp_path / "ds"), "--categories", "1", "--train", "2",
                 "--test", "2"]) == 0
    assert "wrote 1 category to" in capsys.readouterr().out


def test_synthetic_defects_with_one_good_image_is_said_not_ignored(tmp_path, tiny_expert_dir, capsys):
    recipe = write_recipe(tmp_path, tiny_expert_dir)
    good = tmp_path / "good"
    good.mkdir()
    cv2.imwrite(str(good / "only.png"), synthetic_frames(1, defect=None, start=5000)[0].image)
    assert main(["calibrate", str(recipe), "--good", str(good), "--synthetic", "3", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--synthetic 3 ignored: with one good image" in err
    assert "(1 good image)" in err or "from 1 good image)" in err


def test_calibrate_reports_progress_after_the_folds(tmp_path, tiny_expert_dir, capsys):
    recipe = write_recipe(tmp_path, tiny_expert_dir)
    good = tmp_path / "good"
    good.mkdir()
    for frame in synthetic_frames(4, defect=None, start=5000):
        cv2.imwrite(str(good / f"{frame.name}.png"), frame.image)
    assert main(["calibrate", str(recipe), "--good", str(good), "--synthetic", "4"]) == 0
    err = capsys.readouterr().err
    assert "fold 4/4" in err and "scoring 4 defect images against the full bank" in err
    assert "defects: 4/4 scored" in err and "writing bank, thresholds and report" in err


def test_inspect_of_a_folder_ends_with_a_summary_and_group_readable_files(tiny_recipe_path, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for frame in synthetic_frames(3, defect="scratch"):
        cv2.imwrite(str(images / f"{frame.name}.png"), frame.image)
    out = tmp_path / "out"
    assert main(["inspect", str(tiny_recipe_path), str(images), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("[1/3] ") and lines[-1].startswith("3 images: ") and " NG, " in lines[-1]
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    assert stat.S_IMODE(out.stat().st_mode) == 0o750

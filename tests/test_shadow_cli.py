"""`iad-edge run RECIPE --shadow CANDIDATE.yaml`: the summary at exit says how many verdicts would change."""

from __future__ import annotations

import yaml

from edge.cli import main


def test_shadow_run_cli_prints_summary(tiny_recipe_path, capsys):
    data = yaml.safe_load(tiny_recipe_path.read_text())
    data["thresholds"]["image_score"] = 0.0  # every part NG
    candidate = tiny_recipe_path.with_name("candidate.yaml")
    candidate.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["run", str(tiny_recipe_path), "--shadow", str(candidate), "--max-frames", "6", "--no-mqtt", "--quiet"])
    assert code == 0
    err = capsys.readouterr().err
    summary = [line for line in err.splitlines() if line.startswith("shadow ")]
    assert len(summary) == 1, err
    assert f"shadow {candidate}: " in summary[0]
    assert "of 6 compared verdicts would change" in summary[0] and "0 NG->OK" in summary[0]


def test_shadow_run_cli_refuses_bad_candidate(tiny_recipe_path, capsys):
    candidate = tiny_recipe_path.with_name("candidate.yaml")
    candidate.write_text(tiny_recipe_path.read_text().replace("image_score: 0.17", "image_score: 7"))
    assert main(["run", str(tiny_recipe_path), "--shadow", str(candidate), "--max-frames", "2", "--no-mqtt"]) == 1
    err = capsys.readouterr().err
    assert f"{candidate}:" in err and "thresholds.image_score: must be between 0 and 2 (got 7)" in err

"""`iad-edge demo`, the README's first command, end to end in a subprocess (real broker, real assistant child)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.devtools.broker import find_mosquitto

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed (apt-get install mosquitto)")
@pytest.mark.timeout(1200)
def test_demo_builds_what_is_missing_decides_every_part_and_explains_ng_parts(tmp_path):
    recipe = yaml.safe_load((REPO / "calibration" / "demo.yaml").read_text())
    # same recipe, but every artifact under tmp_path (the demo must build the expert and bank itself)
    recipe["expert"]["model"] = str(tmp_path / "engines" / "tiny" / "expert.onnx")
    recipe["bank"]["path"] = str(tmp_path / "demo.bank.npz")
    recipe["mqtt"]["outbox"] = str(tmp_path / "var" / "outbox.sqlite")
    recipe["archive"]["path"] = str(tmp_path / "var" / "archive")
    # the demo also builds and trains the tiny Qwen3.5 + region projector (about a minute on a quiet machine)
    recipe["assistant"]["model"] = str(tmp_path / "engines" / "tiny-qwen35" / "tiny-qwen3.5-region-Q8_0.gguf")
    recipe["assistant"]["projector"] = str(tmp_path / "engines" / "tiny-qwen35" / "projector.json")
    recipe["assistant"]["spool"] = str(tmp_path / "var" / "spool")
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--recipe", str(tmp_path / "demo.yaml"), "--frames", "8",
         "--out", str(out), "--explain-wait", "60"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1100,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert (tmp_path / "engines" / "tiny" / "manifest.json").is_file() and (tmp_path / "demo.bank.npz").is_file()
    decisions = [line for line in proc.stdout.splitlines() if line.startswith("#")]
    assert [line.split()[0] for line in decisions] == [f"#{i}" for i in range(8)]  # one decision per part, in order
    assert "PLC subscriber received 8/8 decisions" in log
    assert "good parts accepted: " in log and "injected defects rejected: " in log
    rejected = log.split("injected defects rejected: ")[1].split(";")[0]  # e.g. "2/2"
    assert rejected.split("/")[0] == rejected.split("/")[1] != "0"  # every injected defect caught (seed 7: #0, #3)
    ng = [line.split()[0][1:] for line in decisions if " NG " in line]
    assert f"explanations received for {len(ng)}/{len(ng)} NG parts" in log
    for trigger in ng:
        assert f"[assistant] #{trigger} region 0:" in log
    explained = [line for line in log.splitlines() if line.startswith("[assistant] #") and " region " in line]
    # the region-token model answered (its own claims beside the mask's geometry), not a rule-based fallback
    assert explained and all(" model says " in line for line in explained), "\n".join(explained)
    assert len(list(out.glob("*.png"))) == 8

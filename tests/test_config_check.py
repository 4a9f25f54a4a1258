"""`iad-edge check`: exit 0 + summary or exit 1 + file:line errors; `--against` shows what would change."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt

from edge.cli import main
from edge.config import load_recipe
from tests.fixtures.config import CONFIG_BASE_RECIPE


def test_config_check_ok(config_recipe_dir, capsys):
    path = config_recipe_dir / "line3.yaml"
    path.write_text(CONFIG_BASE_RECIPE)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {path}")
    assert "thresholds: image_score 0.35, pixel 0.3" in out
    assert "zones seal" in out
    assert "warning: bank.path" in out  # not calibrated yet: a warning, not an error


def test_config_check_errors_exit_1(config_recipe_dir, capsys):
    path = config_recipe_dir / "line3.yaml"
    path.write_text(CONFIG_BASE_RECIPE.replace("model: expert.onnx", "model: missing.onnx"))
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}:11:3: expert.model: file not found: {config_recipe_dir / 'missing.onnx'}" in captured.err
    assert main(["check", "--no-files", str(path)]) == 0


def test_config_check_against_file_lists_changes(config_recipe_dir, capsys):
    running = config_recipe_dir / "running.yaml"
    running.write_text(CONFIG_BASE_RECIPE)
    candidate = config_recipe_dir / "line3.yaml"
    candidate.write_text(CONFIG_BASE_RECIPE.replace("image_score: 0.35", "image_score: 0.42"))
    assert main(["check", str(candidate), "--against", str(running)]) == 0
    out = capsys.readouterr().out
    assert "1 effective value(s) would change:" in out
    assert "~ thresholds.image_score: 0.35 -> 0.42" in out


def test_config_check_against_running_appliance_status(config_recipe_dir, mosquitto_broker, capsys):
    """The appliance's retained status carries the applied values; check diffs against them."""
    running = load_recipe(_write(config_recipe_dir / "running.yaml", CONFIG_BASE_RECIPE))
    status = {"state": "online", "recipe_applied": {"sha256": running.sha256, "values": running.effective()}}
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(mosquitto_broker.host, mosquitto_broker.port)
    client.loop_start()
    client.publish(f"{running.topic_root}/status", json.dumps(status), qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()

    candidate = _write(config_recipe_dir / "line3.yaml", CONFIG_BASE_RECIPE.replace("min_area_px: 16", "min_area_px: 40"))
    target = f"{mosquitto_broker.host}:{mosquitto_broker.port}"
    assert main(["check", str(candidate), "--against", target]) == 0
    out = capsys.readouterr().out
    assert f"recipe sha256 {running.sha256[:12]}" in out
    assert "~ rules.min_area_px: 16 -> 40" in out


def test_config_check_against_bad_target(config_recipe_dir, capsys):
    path = _write(config_recipe_dir / "line3.yaml", CONFIG_BASE_RECIPE)
    assert main(["check", str(path), "--against", "host:notaport"]) == 1
    assert "expected HOST:PORT" in capsys.readouterr().err


def _write(path, text):
    path.write_text(text)
    return path


def test_config_check_resolution_against_the_expert_manifest(config_recipe_dir, capsys):
    (config_recipe_dir / "manifest.json").write_text(json.dumps({"resolution": 448, "patch_size": 14}))
    path = _write(config_recipe_dir / "line3.yaml", CONFIG_BASE_RECIPE)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert (f"{path}:15:3: tiling.resolution: the expert {config_recipe_dir / 'expert.onnx'} was exported for 448 px: "
            "set tiling.resolution: 448 or re-export with `iad-export dinov2 --resolution 224` (got 224)") in err

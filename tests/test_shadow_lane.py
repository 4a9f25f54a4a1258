"""Shadow mode on a running lane with a real broker: the candidate is judged, never published."""

from __future__ import annotations

import shutil

import pytest
import yaml

from edge.config import load_recipe
from edge.station import Station, StationOptions
from tests.fixtures.expert import write_recipe

FRAMES = 12


def _run(tmp_path, expert_dir, bank, broker, recorder, candidate_overrides, live_overrides=None):
    shutil.copy(bank, tmp_path / "bank.npz")
    live_path = write_recipe(tmp_path, expert_dir, live_overrides or {}, name="live.yaml")
    candidate_path = write_recipe(tmp_path, expert_dir, {**(live_overrides or {}), **candidate_overrides}, name="candidate.yaml")
    recipe = load_recipe(live_path)
    plc = recorder(broker, f"{recipe.topic_root}/#")
    live = []
    station = Station(recipe, StationOptions(
        mqtt_host=broker.host, mqtt_port=broker.port, status_interval_s=0.1, shadow=candidate_path,
        observers=(lambda frame, result, decision: live.append((frame.trigger_id, result.verdict)),)))
    station.build()
    try:
        assert station.link.wait_connected(10)
        station.start(FRAMES)
        assert station.wait(60)
    finally:
        station.stop()  # closes the shadow evaluator after the lane's last frame
    return plc, station.shadow, live, recipe


def test_shadow_counts_changed_verdicts_without_publishing_them(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    plc, shadow, live, recipe = _run(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder,
                                     candidate_overrides={"thresholds": {"image_score": 0.0, "pixel": 0.15}})
    summary = shadow.summary()
    ok_live = sum(1 for _, verdict in live if verdict == "OK")
    assert ok_live > 0, "the default recipe should pass some synthetic parts"
    assert summary["compared"] == FRAMES and summary["redecided"] == FRAMES
    assert summary["changed"] == summary["ok_to_ng"] == ok_live  # image_score 0: every part NG
    assert summary["ng_to_ok"] == 0
    assert [e["trigger_id"] for e in summary["examples"]] == [t for t, v in live if v == "OK"][:10]
    assert all(e["live"] == "OK" and e["candidate"] == "NG" for e in summary["examples"])
    # the PLC saw exactly one decision per trigger, all from the live recipe
    assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/result")]) == FRAMES)
    decisions = [x.json for x in plc.on("/decision")]
    assert [d["trigger_id"] for d in decisions] == list(range(FRAMES))
    assert [d["verdict"] for d in decisions] == [v for _, v in live]
    assert all(x.json["recipe_sha256"] == recipe.sha256 for x in plc.on("/result"))
    assert plc.wait_for(lambda m: any((x.json.get("extras") or {}).get("shadow", {}).get("compared") == FRAMES
                                      for x in m if x.topic.endswith("/status")))
    lines = shadow.summary_lines()
    assert lines[0].endswith(f"{ok_live} of {FRAMES} compared verdicts would change ({ok_live / FRAMES:.1%}): "
                             f"{ok_live} OK->NG, 0 NG->OK")


def test_shadow_reinspects_when_the_bank_differs(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    """A candidate with its own bank file (same content here) re-inspects on a shared session: no verdict changes."""
    shutil.copy(tiny_bank_path, tmp_path / "other-bank.npz")
    plc, shadow, live, _ = _run(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder,
                                candidate_overrides={"bank": {"path": "other-bank.npz"}})
    summary = shadow.summary()
    assert summary["reinspected"] + summary["skipped"] == FRAMES
    assert summary["reinspected"] > 0 and summary["redecided"] == 0
    assert summary["changed"] == 0
    assert len(plc.on("/decision")) == FRAMES


def test_shadow_bad_candidate_is_refused_before_the_line_starts(tmp_path, tiny_expert_dir, tiny_bank_path):
    import pytest

    from edge.config import RecipeError

    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, name="live.yaml"))
    bad = tmp_path / "candidate.yaml"
    data = yaml.safe_load((tmp_path / "live.yaml").read_text())
    data["thresholds"]["pixle"] = 0.2
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    station = Station(recipe, StationOptions(mqtt_enabled=False, shadow=bad))
    with pytest.raises(RecipeError) as info:
        station.build()
    assert "unknown key 'pixle' — did you mean 'pixel'?" in str(info.value)
    assert station.lane is not None and station.lane._closed, "what was built before the shadow step is undone"


def test_shadow_verdicts_are_exactly_the_independently_predicted_ones(
        tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder):
    """A candidate threshold between the live OK scores: which triggers change, and with which scores, is
    predicted frame by frame by two plain Inspectors on the same synthetic frames, and the shadow must agree."""
    from edge.inspector import Inspector
    from edge.sources.synthetic import SyntheticSource

    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    live_recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, name="predict-live.yaml"))
    source = SyntheticSource(live_recipe.source)
    frames = [frame for frame, _ in zip(source, range(FRAMES))]
    source.close()
    live_inspector = Inspector.from_recipe(live_recipe)
    predicted_live = [live_inspector.inspect(f.image) for f in frames]
    ok_scores = sorted(r.score for r in predicted_live if r.verdict == "OK")
    assert len(ok_scores) >= 2 and ok_scores[0] < ok_scores[-1]
    threshold = round((ok_scores[0] + ok_scores[-1]) / 2, 6)
    candidate = {"thresholds": {"image_score": threshold, "pixel": live_recipe.thresholds.pixel}}
    candidate_recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, candidate, name="predict-candidate.yaml"))
    candidate_inspector = Inspector.from_recipe(candidate_recipe)
    predicted_candidate = [candidate_inspector.inspect(f.image).verdict for f in frames]
    changes = [i for i in range(FRAMES) if predicted_candidate[i] != predicted_live[i].verdict]
    assert 0 < len(changes) < len(ok_scores)  # some OK parts turn NG, not all

    plc, shadow, live, _ = _run(tmp_path, tiny_expert_dir, tiny_bank_path, mosquitto_broker, mqtt_recorder,
                                candidate_overrides=candidate)
    summary = shadow.summary()
    assert [v for _, v in sorted(live)] == [r.verdict for r in predicted_live]
    assert summary["compared"] == summary["redecided"] == FRAMES and summary["errors"] == 0
    assert summary["changed"] == summary["ok_to_ng"] == len(changes) and summary["ng_to_ok"] == 0
    assert [e["trigger_id"] for e in summary["examples"]] == changes[:10]
    for e in summary["examples"]:
        assert e["score"] == pytest.approx(predicted_live[e["trigger_id"]].score, abs=1e-5)
        assert (e["live"], e["candidate"]) == ("OK", "NG")
    assert plc.wait_for(lambda m: len([x for x in m if x.topic.endswith("/decision")]) == FRAMES)
    assert {x.json["trigger_id"]: x.json["verdict"] for x in plc.on("/decision")} == {
        i: r.verdict for i, r in enumerate(predicted_live)}  # the PLC only ever hears the live recipe

"""The recipe watcher on its own: settle, validate in memory, keep the last good recipe, included files."""

from __future__ import annotations

import os
from concurrent.futures import Future

from edge.config import load_recipe
from edge.lane.watch import RecipeWatcher
from tests.fixtures.config import CONFIG_BASE_RECIPE


class _Sink:
    def __init__(self, fail=None):
        self.applied = []
        self.status = {}
        self.fail = fail

    def apply(self, recipe):
        future = Future()
        if self.fail:
            future.set_exception(self.fail)
        else:
            self.applied.append(recipe)
            future.set_result(None)
        return future

    def set_status(self, key, value):
        self.status[key] = value


def _touch(path, text):
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a visible mtime change on coarse clocks


def _setup(folder, text=CONFIG_BASE_RECIPE, fail=None):
    path = folder / "line3.yaml"
    path.write_text(text)
    sink = _Sink(fail)
    watcher = RecipeWatcher(path, sink.apply, sink.set_status, current=load_recipe(path))
    return path, sink, watcher


def test_reload_change_is_judged_once_the_file_settles(config_recipe_dir):
    path, sink, watcher = _setup(config_recipe_dir)
    first_sha = watcher.current.sha256
    assert sink.status["recipe_applied"]["sha256"] == first_sha
    assert watcher.poll() is None  # nothing changed
    _touch(path, CONFIG_BASE_RECIPE.replace("min_area_px: 16", "min_area_px: 30"))
    assert watcher.poll() is None  # first sight: wait for the editor to finish
    assert watcher.poll() == "applied"
    assert [r.rules.min_area_px for r in sink.applied] == [30]
    assert sink.status["recipe_applied"]["values"]["rules"]["min_area_px"] == 30
    assert sink.status["recipe_error"] is None
    history = sink.status["recipe_history"]
    assert [h["sha256"] for h in history] == [first_sha, sink.applied[-1].sha256]
    assert all(h["applied_at"].endswith("Z") for h in history)


def test_reload_invalid_edit_keeps_last_good_and_reports_line(config_recipe_dir):
    path, sink, watcher = _setup(config_recipe_dir)
    good_sha = watcher.current.sha256
    _touch(path, CONFIG_BASE_RECIPE.replace("  threads: 2", "  treads: 2"))
    assert watcher.poll(settle=False) == "invalid"
    assert sink.applied == []
    assert sink.status["recipe_error"] == f"{path}:12:3: expert.treads: unknown key 'treads' — did you mean 'threads'?"
    assert watcher.current.sha256 == good_sha
    _touch(path, CONFIG_BASE_RECIPE)  # the technician undoes the edit
    assert watcher.poll(settle=False) == "unchanged"
    assert sink.applied == [] and sink.status["recipe_error"] is None


def test_reload_edit_of_included_generated_file(config_recipe_dir):
    generated = config_recipe_dir / "line3.generated.yaml"
    generated.write_text("thresholds:\n  image_score: 0.5\n")
    text = CONFIG_BASE_RECIPE.replace("version: 1\n", "version: 1\ninclude: line3.generated.yaml\n")
    text = text.replace("  image_score: 0.35\n", "")
    path, sink, watcher = _setup(config_recipe_dir, text)
    _touch(generated, "thresholds:\n  image_score: 0.6\n")
    assert watcher.poll(settle=False) == "applied"
    assert sink.applied[-1].thresholds.image_score == 0.6


def test_reload_refused_by_the_lane_is_reported_and_retried_on_save(config_recipe_dir):
    path, sink, watcher = _setup(config_recipe_dir, fail=RuntimeError("bank does not fit the expert"))
    edited = CONFIG_BASE_RECIPE.replace("min_area_px: 16", "min_area_px: 30")
    _touch(path, edited)
    assert watcher.poll(settle=False) == "invalid"
    assert sink.status["recipe_error"] == f"{path}: recipe not applied: bank does not fit the expert"
    assert watcher.current.rules.min_area_px == 16
    sink.fail = None
    _touch(path, edited)  # saved again after fixing the bank: tried again
    assert watcher.poll(settle=False) == "applied"
    assert watcher.current.rules.min_area_px == 30

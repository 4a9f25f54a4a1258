"""Live reload is loaded in the background and swapped between frames.

* the load time of a new expert/bank never lands on a frame (frames keep their
  window while a slow load runs);
* a recipe is applied even when no frame arrives;
* a reload that fails closes the expert it opened;
* at shutdown nothing loads, swaps or closes while a frame is being inspected.

The lane tests use an inspector whose load takes 1 s (standing in for a large
TensorRT engine); the failure test uses the real Inspector and ONNX Runtime expert.
"""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from edge.config import load_recipe, parse_recipe
from edge.lane.lane import Lane
from edge.types import Frame, InspectionResult
from tests.fixtures.config import CONFIG_BASE_RECIPE

LOAD_S = 1.0


class _SlowLoadingInspector:
    """Loading a recipe costs LOAD_S (as a big engine does); inspecting a frame costs inspect_s."""

    expert = None

    def __init__(self, recipe, inspect_s: float = 0.005) -> None:  # type: ignore[no-untyped-def]
        self.recipe = recipe
        self.inspect_s = inspect_s
        self.inspecting = threading.Event()
        self.overlaps: list[str] = []  # load/swap/close calls made while a frame was being inspected
        self.closed = False

    def _guard(self, what: str) -> None:
        if self.inspecting.is_set():
            self.overlaps.append(what)

    def inspect(self, image: np.ndarray) -> InspectionResult:
        self.inspecting.set()
        try:
            time.sleep(self.inspect_s)
            return InspectionResult(0.1, "OK", "ok", [], np.zeros((4, 4), np.float32))
        finally:
            self.inspecting.clear()

    def update_recipe(self, recipe) -> None:  # type: ignore[no-untyped-def]
        self._guard("update_recipe")
        time.sleep(LOAD_S)
        self.recipe = recipe

    def prepare_recipe(self, recipe):  # type: ignore[no-untyped-def]
        time.sleep(LOAD_S)  # safe beside inspect(): touches nothing frames use
        return recipe

    def commit_recipe(self, prepared) -> None:  # type: ignore[no-untyped-def]
        self._guard("commit_recipe")
        self.recipe = prepared

    def discard_recipe(self, prepared) -> None:  # type: ignore[no-untyped-def]
        pass

    def close(self) -> None:
        self._guard("close")
        self.closed = True


class _Camera:
    """A pushing source: a frame every 20 ms until closed."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def __iter__(self):  # type: ignore[no-untyped-def]
        n = 0
        while not self.stop.is_set():
            time.sleep(0.02)
            n += 1
            yield Frame(image=np.zeros((4, 4, 3), np.uint8), trigger_id=n, trigger_time=time.time(), source="camera")

    def close(self) -> None:
        self.stop.set()


class _Silent:
    """A source that never triggers (a stopped line)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.stop.wait()
        return iter(())

    def close(self) -> None:
        self.stop.set()


@pytest.fixture
def recipes(config_recipe_dir):  # type: ignore[no-untyped-def]
    old = parse_recipe(CONFIG_BASE_RECIPE, config_recipe_dir / "line3.yaml")  # window_ms: 150
    new = parse_recipe(CONFIG_BASE_RECIPE.replace("min_area_px: 16", "min_area_px: 30"), config_recipe_dir / "line3.yaml")
    return old, new


def test_a_slow_load_never_lands_on_a_frame(recipes) -> None:  # type: ignore[no-untyped-def]
    old, new = recipes
    inspector = _SlowLoadingInspector(old)
    lane = Lane(old, inspector, _Camera(), pull=False)
    decisions = []
    lane.add_observer(lambda frame, result, decision: decisions.append(decision))
    lane.start()
    try:
        time.sleep(0.2)
        future = lane.apply_recipe(new)
        future.result(timeout=10)
        time.sleep(0.2)
    finally:
        lane.stop()
    assert lane.recipe is new and inspector.recipe is new
    assert len(decisions) >= 40
    late = [d for d in decisions if d.fail_safe]
    assert late == [], f"{len(late)} fail-safe decisions while the new recipe loaded, e.g. {late[0].reason}"
    assert max(d.latency_ms for d in decisions) < 150


def test_a_recipe_is_applied_when_no_frame_comes(recipes) -> None:  # type: ignore[no-untyped-def]
    old, new = recipes
    lane = Lane(old, _SlowLoadingInspector(old), _Silent(), pull=False)
    lane.start()
    try:
        lane.apply_recipe(new).result(timeout=LOAD_S + 3)
        assert lane.recipe is new
    finally:
        lane.stop()


def test_nothing_is_swapped_or_loaded_while_a_frame_is_inspected_at_shutdown(recipes) -> None:  # type: ignore[no-untyped-def]
    old, new = recipes
    inspector = _SlowLoadingInspector(old, inspect_s=0.3)
    lane = Lane(old, inspector, _Camera(), pull=False)
    lane.start()
    assert inspector.inspecting.wait(5)
    stopper = threading.Thread(target=lane.stop)
    stopper.start()
    time.sleep(0.05)  # stop() is under way, the frame is still being inspected
    future = lane.apply_recipe(new)  # e.g. the recipe watcher noticing an edit just now
    stopper.join(30)
    with pytest.raises(Exception, match="stopped|superseded"):
        future.result(timeout=5)
    assert inspector.overlaps == []
    assert lane.recipe is old


def test_a_failed_reload_closes_the_expert_it_opened(tmp_path, tiny_expert_dir, tiny_bank_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import edge.inspector as inspector_module
    from edge.errors import IadError
    from edge.inspector import Inspector
    from tests.fixtures.expert import write_recipe

    shutil.copy(tiny_bank_path, tmp_path / "bank.npz")
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir))
    inspector = Inspector.from_recipe(recipe)
    opened = []
    real_load = inspector_module.load_expert

    def recording_load(cfg):  # type: ignore[no-untyped-def]
        expert = real_load(cfg)
        closes = []
        real_close = expert.close
        expert.close = lambda: (closes.append(1), real_close())  # type: ignore[method-assign]
        opened.append(closes)
        return expert

    monkeypatch.setattr(inspector_module, "load_expert", recording_load)
    copy = tmp_path / "other"
    shutil.copytree(tiny_expert_dir, copy)
    bad = load_recipe(write_recipe(tmp_path, copy, {"bank": {"path": str(tmp_path / "missing.npz")}}, name="bad.yaml"))
    running = inspector.expert
    with pytest.raises((IadError, OSError)):
        inspector.update_recipe(bad)  # new expert loads, then its bank is missing
    assert len(opened) == 1 and opened[0] == [1], "the expert opened for the failed reload was left open"
    assert inspector.expert is running and inspector.recipe is recipe
    inspector.close()

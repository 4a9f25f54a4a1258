"""Start the station's plant outputs (Sparkplug B, Prometheus metrics) next to a lane, in one call.

``hooks = attach_plant(lane, recipe)`` after the lane is built (before it starts),
``hooks.close()`` after ``lane.stop()``. Both outputs are lane observers (post
thread) with their own threads; a section that is off costs nothing (this module
needs the `plant` extra; the station imports it only when the recipe asks for one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from edge.plant.metrics import AssistantStatusFeed, StationMetrics
from edge.plant.sparkplug import SparkplugNode

log = logging.getLogger(__name__)


@dataclass
class PlantHooks:
    sparkplug: Any = None
    metrics: Any = None

    def close(self) -> None:
        """NDEATH on the Sparkplug side, then the metrics endpoint down."""
        if self.sparkplug is not None:
            self.sparkplug.stop()
        if self.metrics is not None:
            self.metrics.close()


def attach_plant(lane: Any, recipe: Any, mqtt_host: str | None = None, mqtt_port: int | None = None) -> PlantHooks:
    """Start what the recipe's ``sparkplug:`` and ``metrics:`` sections ask for and register it on ``lane``.

    ``mqtt_host``/``mqtt_port`` (the `run --mqtt-host/--mqtt-port` overrides) apply to Sparkplug
    too unless ``sparkplug.host``/``port`` name another broker.
    """
    hooks = PlantHooks()
    try:
        if recipe.sparkplug.enabled:
            node = SparkplugNode(
                recipe,
                counters=lane.counters.snapshot,
                hashes=lambda: (lane.recipe.sha256, lane.engine_sha256),
                host=recipe.sparkplug.host or mqtt_host,
                port=recipe.sparkplug.port or mqtt_port,
            )
            hooks.sparkplug = node.start()
            lane.add_observer(node.observe)
        if recipe.metrics.port is not None:
            feed = None
            if recipe.assistant.enabled and getattr(lane, "link", None) is not None:
                feed = AssistantStatusFeed(recipe, lane.link.host, lane.link.port)
            metrics = StationMetrics(lane, sparkplug=hooks.sparkplug, assistant_feed=feed)
            hooks.metrics = metrics
            metrics.serve(recipe.metrics.port, recipe.metrics.host)
            lane.add_observer(metrics.observe)
    except BaseException:
        hooks.close()
        raise
    return hooks

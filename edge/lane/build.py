"""Assemble a :class:`~edge.lane.lane.Lane` from a recipe: inspector, source, outbox, MQTT link, archive.

Shared by ``iad-edge run``, ``iad-edge demo``, the tests and the benchmark, so
that all of them exercise the same wiring.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from edge.archive import Archive
from edge.config.recipe import Recipe
from edge.lane.lane import Lane
from edge.mqtt.client import MqttLink
from edge.mqtt.outbox import Outbox
from edge.mqtt.topics import Topics


def build_lane(
    recipe: Recipe,
    mqtt_host: Optional[str] = None,
    mqtt_port: Optional[int] = None,
    mqtt_enabled: Optional[bool] = None,
    inspector: Any = None,
    source: Any = None,
    bank_path: Any = None,
    queue_size: Optional[int] = None,
    status_interval_s: Optional[float] = None,
    pull: Optional[bool] = None,
) -> Lane:
    """Build (not start) the lane; the MQTT link starts connecting in the background right away.

    ``queue_size`` and ``status_interval_s`` default to the recipe's
    ``decision.queue_size`` and ``mqtt.status_interval_s``.
    ``pull`` (default: from the source type, see :func:`edge.lane.lane.is_pull_source`)
    says whether the source is pulled when there is room (file replay) or pushes
    frames at its own pace (cameras: a full queue means a fail-safe decision).
    """
    if inspector is None:
        from edge.inspector import Inspector

        inspector = Inspector.from_recipe(recipe, bank_path=bank_path)
    if source is None:
        from edge.sources import open_source

        source = open_source(recipe.source)
    queue_size = recipe.decision.queue_size if queue_size is None else queue_size
    status_interval_s = recipe.mqtt.status_interval_s if status_interval_s is None else status_interval_s
    session = uuid.uuid4().hex[:8]
    enabled = recipe.mqtt.enabled if mqtt_enabled is None else mqtt_enabled
    outbox = link = None
    lane_box: dict[str, Lane] = {}
    try:
        archive = Archive(recipe.archive, session) if recipe.archive.enabled else None
        if enabled:
            outbox = Outbox(recipe.mqtt.outbox)
            client_id = recipe.mqtt.client_id or f"iad-edge-{recipe.line}-{recipe.station}"
            link = MqttLink(
                recipe.mqtt, Topics(recipe.topic_root), outbox, client_id,
                status_provider=lambda: lane_box["lane"].status() if "lane" in lane_box else {},
                host=mqtt_host, port=mqtt_port, status_interval_s=status_interval_s,
            )
            link.start()  # a bad password/TLS file raises here
    except BaseException:  # e.g. an outbox path that cannot be written: release the camera again
        source.close()
        if outbox is not None:
            outbox.close()
        raise
    lane = Lane(recipe, inspector, source, link=link, outbox=outbox, archive=archive, queue_size=queue_size,
                pull=pull, session=session)
    lane_box["lane"] = lane
    return lane

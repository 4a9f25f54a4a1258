"""The composition root: everything one station runs, built and started in ONE ordered list.

``iad-edge run``, ``iad-edge demo``, the tests and the benchmarks construct the
appliance only here, so they cannot drift apart. :meth:`Station.start` walks
:meth:`Station.steps` in order; each step returns how to undo it, and
:meth:`Station.stop` undoes the steps that ran in reverse order (also when a
later step failed during start). The order says who needs whom:

1. ``inspector``       expert + memory bank (+ prototypes) from the recipe
2. ``source``          the frame source (camera, folder, synthetic)
3. ``outbox``          the SQLite outbox of results (when MQTT is on)
4. ``archive``         the NG archive writer (when enabled)
5. ``lane``            the lane, not yet running; it now owns source, outbox and archive
6. ``mqtt link``       connects only now, so the first retained ``online`` status already
                       carries the lane's session and counters (the will carries the session)
7. ``commands``        the ``cmd/+`` listener (own MQTT connection)
8. ``watcher``         live recipe reload
9. ``shadow``          shadow mode with a candidate recipe
10. ``assistant hooks`` busy flag, hard-yield freezer, NG spool for the assistant process
11. ``assistant``      the assistant as a supervised child process (demo; production uses systemd)
12. ``plant``          Sparkplug B edge node + Prometheus metrics (when the recipe asks; lane observers)
13. ``notifier``       systemd notify socket
— :meth:`Station.build` ends here; :meth:`Station.start` goes on with —
14. ``frames``         the lane's threads: frames flow
15. ``ready``          systemd READY=1, then the watchdog heartbeat (never a ping before READY)

Adding something that runs with the station = one method and one line in :meth:`steps`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.archive import Archive
from edge.assistant.busy_signal import BusySignal, signal_name
from edge.assistant.freezer import AssistantFreezer
from edge.assistant.spool import SpoolWriter
from edge.assistant.supervisor import AssistantSupervisor
from edge.config import Recipe, load_recipe
from edge.inspector import Inspector
from edge.lane.lane import Lane, Observer
from edge.lane.notify import Notifier, Watchdog
from edge.lane.shadow import ShadowEvaluator, same_computation
from edge.lane.watch import RecipeWatcher
from edge.mqtt.client import MqttLink
from edge.mqtt.commands import CommandDispatcher, CommandListener, lane_commands
from edge.mqtt.outbox import Outbox
from edge.mqtt.topics import Topics
from edge.sources import FrameSource, open_source
from edge.types import InspectorLike

log = logging.getLogger(__name__)

Undo = Callable[[], None] | None


@dataclass
class StationOptions:
    """How to run a recipe: overrides from the command line, and which parts to start.

    ``None`` means "as the recipe says" (``mqtt.enabled``, ``decision.queue_size``,
    ``mqtt.status_interval_s``, ``assistant.enabled``, the source's own pull/push mode).
    ``inspector``/``source`` replace what the recipe would load (tests, benchmarks).
    """

    mqtt_host: str | None = None
    mqtt_port: int | None = None
    mqtt_enabled: bool | None = None
    bank_path: Path | None = None
    queue_size: int | None = None
    status_interval_s: float | None = None
    pull: bool | None = None
    recipe_path: Path | None = None  # the recipe file: watched for live reload, handed to the assistant child
    watch: bool = False  # live reload of recipe_path
    watch_interval_s: float = 0.5
    shadow: Path | None = None  # candidate recipe for shadow mode
    commands: bool = False  # serve cmd/+ (needs MQTT)
    command_rate_per_s: float = 2.0
    command_burst: int = 5
    assistant_hooks: bool | None = None  # busy flag + NG spool; None: recipe.assistant.enabled
    supervise_assistant: bool = False  # also run `iad-edge assistant` as a child process (demo)
    assistant_log: Path | None = None
    notify: bool = False  # systemd READY/STOPPING/WATCHDOG
    notifier: Notifier | None = None  # a given notifier (tests); implies notify
    inspector: InspectorLike | None = None
    source: FrameSource | None = None
    observers: Sequence[Observer] = field(default_factory=tuple)
    drain_timeout_s: float = 5.0


class Station:
    """One station's appliance: see the module docstring for the ordered steps."""

    def __init__(self, recipe: Recipe, options: StationOptions | None = None):
        self.recipe = recipe
        self.options = options or StationOptions()
        self.session = uuid.uuid4().hex[:8]
        self.inspector: InspectorLike | None = None
        self.source: FrameSource | None = None
        self.outbox: Outbox | None = None
        self.archive: Archive | None = None
        self.lane: Lane | None = None
        self.link: MqttLink | None = None
        self.commands: CommandListener | None = None
        self.watcher: RecipeWatcher | None = None
        self.shadow: ShadowEvaluator | None = None
        self.busy: BusySignal | None = None
        self.spool: SpoolWriter | None = None
        self.freezer: AssistantFreezer | None = None
        self.assistant: AssistantSupervisor | None = None
        self.notifier: Notifier | None = None
        self.watchdog: Watchdog | None = None
        self.plant: object | None = None  # edge.plant.hooks.PlantHooks when sparkplug/metrics are on
        self.shadow_summary: list[str] = []
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._built = False
        self._max_frames: int | None = None

    # ------------------------------------------------------------------ the ordered list
    def steps(self) -> list[tuple[str, Callable[[], Undo]]]:
        """What :meth:`build` does, in order (name, step); each step returns its undo or None."""
        return [
            ("inspector", self._start_inspector),
            ("source", self._start_source),
            ("outbox", self._start_outbox),
            ("archive", self._start_archive),
            ("lane", self._start_lane),
            ("mqtt link", self._start_link),
            ("commands", self._start_commands),
            ("watcher", self._start_watcher),
            ("shadow", self._start_shadow),
            ("assistant hooks", self._start_assistant_hooks),
            ("assistant", self._start_assistant),
            ("plant", self._start_plant),
            ("notifier", self._start_notifier),
        ]

    def run_steps(self) -> list[tuple[str, Callable[[], Undo]]]:
        """What :meth:`start` adds after :meth:`build`."""
        return [("frames", self._start_frames), ("ready", self._start_ready)]

    # ------------------------------------------------------------------ lifecycle
    def build(self) -> Station:
        """Run :meth:`steps` (everything except the frame flow); on failure undo what ran and re-raise."""
        if not self._built:
            self._run(self.steps())
            self._built = True
        return self

    def start(self, max_frames: int | None = None) -> Station:
        """:meth:`build` if needed, then let frames flow (until ``max_frames``, the source's end or :meth:`stop`)."""
        self._max_frames = max_frames
        self.build()
        self._run(self.run_steps())
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True once acquisition ended (``max_frames`` reached or the source ran out)."""
        assert self.lane is not None, "start() the station first"
        return self.lane.wait(timeout)

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Undo every step that ran, last first. Safe to call twice and after a failed start."""
        if drain_timeout_s is not None:
            self.options.drain_timeout_s = drain_timeout_s
        while self._undo:
            name, undo = self._undo.pop()
            try:
                undo()
            except Exception:  # keep undoing the rest
                log.exception("stopping %s failed", name)
        self._built = False

    def __enter__(self) -> Station:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, steps: list[tuple[str, Callable[[], Undo]]]) -> None:
        for name, step in steps:
            try:
                undo = step()
            except BaseException:
                log.debug("station step %r failed; undoing the steps before it", name)
                self.stop(drain_timeout_s=0)
                raise
            if undo is not None:
                self._undo.append((name, undo))

    # ------------------------------------------------------------------ steps
    def _start_inspector(self) -> Undo:
        if self.options.inspector is not None:
            self.inspector = self.options.inspector
            return None
        inspector = Inspector.from_recipe(self.recipe, bank_path=self.options.bank_path)
        self.inspector = inspector
        return inspector.close

    def _start_source(self) -> Undo:
        self.source = self.options.source if self.options.source is not None else open_source(self.recipe.source)
        return self.source.close

    @property
    def mqtt_enabled(self) -> bool:
        return self.recipe.mqtt.enabled if self.options.mqtt_enabled is None else self.options.mqtt_enabled

    def _start_outbox(self) -> Undo:
        if not self.mqtt_enabled:
            return None
        self.outbox = Outbox(self.recipe.mqtt.outbox, limits=self.recipe.mqtt.outbox_limits)
        return self.outbox.close

    def _start_archive(self) -> Undo:
        if not self.recipe.archive.enabled:
            return None
        self.archive = Archive(self.recipe.archive, self.session)
        return self.archive.close

    def _start_lane(self) -> Undo:
        assert self.inspector is not None and self.source is not None
        queue_size = self.options.queue_size if self.options.queue_size is not None else self.recipe.decision.queue_size
        lane = Lane(self.recipe, self.inspector, self.source, outbox=self.outbox, archive=self.archive,
                    queue_size=queue_size, pull=self.options.pull, session=self.session)
        for observer in self.options.observers:
            lane.add_observer(observer)
        # The lane owns source, outbox and archive from here on: Lane.stop() closes them in the right order.
        owned = {"source", "outbox", "archive"}
        self._undo = [(name, undo) for name, undo in self._undo if name not in owned]
        self.lane = lane
        return lambda: lane.stop(drain_timeout_s=0)

    def _start_link(self) -> Undo:
        if self.outbox is None:
            return None
        assert self.lane is not None
        recipe, options = self.recipe, self.options
        interval = options.status_interval_s if options.status_interval_s is not None else recipe.mqtt.status_interval_s
        link = MqttLink(
            recipe.mqtt, Topics(recipe.topic_root), self.outbox,
            recipe.mqtt.client_id or f"iad-edge-{recipe.line}-{recipe.station}",
            status_provider=self.lane.status,  # the lane exists: the first status is complete
            identity={"session": self.session, "line": recipe.line, "station": recipe.station},
            host=options.mqtt_host, port=options.mqtt_port, status_interval_s=interval,
        )
        link.start()  # a bad password/TLS file raises here
        self.link = link
        self.lane.attach_link(link)  # Lane.stop() drains and stops it
        return None

    def _start_commands(self) -> Undo:
        if not self.options.commands or self.link is None:
            return None
        assert self.lane is not None
        dispatcher = lane_commands(
            CommandDispatcher(self.recipe.topic_root, publish=lambda topic, payload: None,
                              rate_per_s=self.options.command_rate_per_s, burst=self.options.command_burst),
            self.lane)
        self.commands = CommandListener(self.recipe.mqtt, dispatcher, f"{self.link.client_id}-cmd",
                                        host=self.link.host, port=self.link.port).start()
        return self.commands.stop

    def _start_watcher(self) -> Undo:
        if not self.options.watch or self.options.recipe_path is None:
            return None
        assert self.lane is not None
        lane = self.lane
        self.watcher = RecipeWatcher(self.options.recipe_path, lane.apply_recipe, lane.set_status_field,
                                     current=lane.recipe, interval_s=self.options.watch_interval_s).start()
        return self.watcher.stop

    def _start_shadow(self) -> Undo:
        if self.options.shadow is None:
            return None
        assert self.lane is not None
        candidate = load_recipe(self.options.shadow, check_files=True)  # a RecipeError stops here, before the line starts
        shadow = ShadowEvaluator(candidate, self.lane.inspector, self.lane.set_status_field)
        if not same_computation(self.lane.recipe, candidate):
            shadow.prepare()  # load the candidate's bank/model now: a bad one stops before the line starts
        self.lane.add_observer(shadow.observe)
        self.shadow = shadow

        def undo() -> None:
            shadow.close()
            self.shadow_summary = shadow.summary_lines()
            for line in self.shadow_summary:
                log.info("%s", line)

        return undo

    @property
    def assistant_enabled(self) -> bool:
        hooks = self.options.assistant_hooks
        return bool(self.recipe.assistant.enabled if hooks is None else hooks)

    def _start_assistant_hooks(self) -> Undo:
        """The lane sets the shared busy flag around every frame and drops NG parts into the spool."""
        if not self.assistant_enabled:
            return None
        assert self.lane is not None
        cfg = self.recipe.assistant
        busy = BusySignal(cfg.busy_signal or signal_name(self.recipe.line, self.recipe.station))
        busy.set(False)
        self.busy = busy
        spool = SpoolWriter(Path(cfg.spool), session=self.session, self_test_every_s=cfg.self_test_every_s)
        self.spool = spool
        self.lane.add_busy_listener(busy.set)
        freezer = None
        if cfg.hard_yield:  # edge/assistant/freezer.py: the assistant opts in by registering its pid
            freezer = AssistantFreezer(busy)
            self.lane.add_busy_listener(freezer)
        self.freezer = freezer
        self.lane.add_observer(spool.observe)
        self.lane.set_status_field("assistant_spool", spool.stats())

        def undo() -> None:
            if freezer is not None:
                freezer.close()  # never leave the assistant stopped
            spool.close()
            busy.set(False)
            busy.close()

        return undo

    def _start_assistant(self) -> Undo:
        if not (self.options.supervise_assistant and self.assistant_enabled):
            return None
        if self.options.recipe_path is None:
            raise ValueError("StationOptions.recipe_path is needed to start the assistant process")
        link = self.link
        extra = ["--mqtt-host", link.host, "--mqtt-port", str(link.port)] if link is not None else ["--no-mqtt"]
        self.assistant = AssistantSupervisor(self.options.recipe_path, extra, log_path=self.options.assistant_log).start()
        return self.assistant.stop

    def _start_plant(self) -> Undo:
        """Sparkplug B edge node and Prometheus metrics (recipe ``sparkplug:``/``metrics:``): lane observers, own threads."""
        if not (self.recipe.sparkplug.enabled or self.recipe.metrics.port is not None):
            return None
        from edge.plant.hooks import attach_plant

        assert self.lane is not None
        self.plant = attach_plant(self.lane, self.recipe, self.options.mqtt_host, self.options.mqtt_port)
        return self.plant.close

    def _start_notifier(self) -> Undo:
        if not (self.options.notify or self.options.notifier is not None):
            return None
        self.notifier = self.options.notifier or Notifier()
        return self.notifier.close

    def _start_frames(self) -> Undo:
        assert self.lane is not None
        lane = self.lane
        lane.start(self._max_frames)
        return lambda: lane.stop(drain_timeout_s=self.options.drain_timeout_s)

    def _start_ready(self) -> Undo:
        if self.notifier is None:
            return None
        assert self.lane is not None
        notifier, lane = self.notifier, self.lane
        notifier.ready(f"inspecting {self.recipe.line}/{self.recipe.station}")
        watchdog = Watchdog(notifier)  # after READY: systemd ignores (and we never send) pings before it
        if watchdog.enabled:
            lane.add_busy_listener(watchdog.on_busy)
            watchdog.start_heartbeat(lane.healthy)
        self.watchdog = watchdog

        def undo() -> None:
            notifier.stopping("finishing in-flight frames")
            watchdog.stop()

        return undo


def build_lane(recipe: Recipe, **options: object) -> Lane:
    """The lane alone, for tests and benchmarks: a :class:`Station` built with only its lane steps.

    Keyword arguments are :class:`StationOptions` fields (``mqtt_host``, ``inspector``, ...);
    commands, watcher, shadow, assistant and notify stay off unless asked for.
    ``lane.stop()`` releases the source, outbox, archive and MQTT link.
    """
    opts = StationOptions(**options)  # type: ignore[arg-type]
    if "assistant_hooks" not in options:
        opts.assistant_hooks = False
    station = Station(recipe, opts).build()
    assert station.lane is not None
    return station.lane

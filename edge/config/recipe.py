"""The whole recipe: one YAML file per inspection station."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, WithJsonSchema, field_validator, model_validator

from edge.config.archive import ArchiveConfig
from edge.config.assistant import AssistantConfig
from edge.config.base import StrictModel, rule_error
from edge.config.decision import DecisionConfig, RulesConfig, ThresholdsConfig
from edge.config.expert import BankConfig, ExpertConfig, RoiConfig, TilingConfig
from edge.config.mqtt import MqttConfig
from edge.config.plant import ConsoleConfig, MetricsConfig, SparkplugConfig
from edge.config.source import SourceConfig

RECIPE_VERSION = 1


_SECTIONS_WITH_DEFAULTS = ("tiling", "thresholds", "rules", "decision", "mqtt", "archive", "assistant",
                           "sparkplug", "metrics", "console")


class Recipe(StrictModel):
    """An inspection recipe: camera, region expert, thresholds, rules, outputs."""

    version: Literal[1] = Field(description="Recipe format version; this appliance reads version 1.")
    include: Annotated[
        list[str],
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    ] = Field(
        default_factory=list,
        description="Recipe files merged in UNDER this one (e.g. the thresholds that `iad-edge calibrate` writes to "
        "<name>.generated.yaml): their values are defaults, keys written in this file win. Relative to this file's folder.",
    )
    line: str = Field("line1", pattern=r"^[A-Za-z0-9_-]+$", description="Production line name (MQTT topic level).")
    station: str = Field("station1", pattern=r"^[A-Za-z0-9_-]+$", description="Station name on the line (MQTT topic level).")
    source: SourceConfig = Field(description="Where frames come from: synthetic, folder or genicam.")
    roi: RoiConfig | None = Field(None, description="Region of interest; null inspects the whole frame.")
    pixel_pitch_mm: float | None = Field(None, gt=0, description="Size of one pixel on the part in mm; enables mm² areas.")
    expert: ExpertConfig = Field(description="The region expert backend and its model file.")
    tiling: TilingConfig = Field(default_factory=TilingConfig, description="How frames become model inputs.")
    bank: BankConfig = Field(description="Memory bank of good parts.")
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig, description="Score thresholds.")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="Reject rules.")
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="Decision window and fail-safe verdict.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection and topics.")
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig, description="NG frame archive.")
    assistant: AssistantConfig = Field(default_factory=AssistantConfig, description="Assistant lane.")
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig, description="Sparkplug B edge node for SCADA/HMI.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics endpoint.")
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, description="Technician console (its own process).")

    _source_path: Path | None = PrivateAttr(None)
    _source_text: str = PrivateAttr("")

    _source_hash: str = PrivateAttr("")
    _included: tuple[Path, ...] = PrivateAttr(())

    @field_validator("include", mode="before")
    @classmethod
    def _one_or_many(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the frames when the recipe fixes it (synthetic size or GenICam Width/Height)."""
        return self.source.frame_size()

    @model_validator(mode="before")
    @classmethod
    def _validate_omitted_sections(cls, data: Any) -> Any:
        """Treat an omitted section as ``{}`` so its defaults are validated like written values.

        Otherwise a default factory builds the section outside validation and its
        default paths (``archive.path``, ``mqtt.outbox``, ``assistant.spool``) would
        stay relative to the working directory instead of the recipe's folder.
        """
        if isinstance(data, dict):
            data = dict(data)
            for name in _SECTIONS_WITH_DEFAULTS:
                data.setdefault(name, {})
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Recipe:
        """Checks that span sections; each message names the field to fix and how."""
        if self.rules.min_area_mm2 is not None and self.pixel_pitch_mm is None:
            raise rule_error("rules.min_area_mm2", "needs pixel_pitch_mm (mm per pixel): set pixel_pitch_mm or use rules.min_area_px")
        for index, zone in enumerate(self.rules.zones):
            where = f"rules.zones.{index}"
            if zone.min_area_mm2 is not None and self.pixel_pitch_mm is None:
                raise rule_error(f"{where}.min_area_mm2", "needs pixel_pitch_mm (mm per pixel): set pixel_pitch_mm or use min_area_px")
            if zone.pixel is not None and zone.pixel < self.thresholds.pixel:
                raise rule_error(
                    f"{where}.pixel",
                    f"zone threshold {zone.pixel:g} is below thresholds.pixel {self.thresholds.pixel:g}, so it can never apply "
                    "(regions are cut at thresholds.pixel): lower thresholds.pixel or raise the zone's pixel",
                )
        size = self.frame_size()
        if size is not None:
            width, height = size
            for index, zone in enumerate(self.rules.zones):
                for number, (x, y) in enumerate(zone.polygon):
                    if x > width or y > height:
                        raise rule_error(
                            f"rules.zones.{index}.polygon.{number}",
                            f"point [{x:g}, {y:g}] is outside the {width}x{height} frame",
                        )
            if self.roi is not None:
                if self.roi.x + self.roi.width > width:
                    raise rule_error("roi.width", f"roi.x + roi.width = {self.roi.x + self.roi.width} exceeds the frame width {width}")
                if self.roi.y + self.roi.height > height:
                    raise rule_error("roi.height", f"roi.y + roi.height = {self.roi.y + self.roi.height} exceeds the frame height {height}")
        if self.rules.always_reject and self.assistant.prototypes is None:
            raise rule_error(
                "rules.always_reject",
                "defect types need prototypes: set assistant.prototypes (built by `iad-edge calibrate --defects DIR`)",
            )
        return self

    @property
    def source_path(self) -> Path | None:
        """The YAML file this recipe was read from (None when built in code)."""
        return self._source_path

    @property
    def topic_root(self) -> str:
        """MQTT topic root without a trailing slash: iad/<line>/<station> unless overridden."""
        return (self.mqtt.topic_root or f"iad/{self.line}/{self.station}").rstrip("/")

    @property
    def sha256(self) -> str:
        """Hash of the recipe as read from disk, included files too (published so the PLC side sees which recipe decided)."""
        if self._source_hash:
            return self._source_hash
        text = self._source_text or self.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def included_paths(self) -> tuple[Path, ...]:
        """Files merged in through `include:` (watched for live reload like the recipe itself)."""
        return self._included

    def effective(self) -> dict[str, Any]:
        """The applied values as plain JSON (paths resolved): what `check --against` compares."""
        return self.model_dump(mode="json")

"""The whole recipe: one YAML file per inspection station."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, PrivateAttr, model_validator

from edge.config.archive import ArchiveConfig
from edge.config.assistant import AssistantConfig
from edge.config.base import StrictModel
from edge.config.decision import DecisionConfig, RulesConfig, ThresholdsConfig
from edge.config.expert import BankConfig, ExpertConfig, RoiConfig, TilingConfig
from edge.config.mqtt import MqttConfig
from edge.config.source import SourceConfig

RECIPE_VERSION = 1


class Recipe(StrictModel):
    """An inspection recipe: camera, region expert, thresholds, rules, outputs."""

    version: Literal[1] = Field(description="Recipe format version; this appliance reads version 1.")
    line: str = Field("line1", pattern=r"^[A-Za-z0-9_-]+$", description="Production line name (MQTT topic level).")
    station: str = Field("station1", pattern=r"^[A-Za-z0-9_-]+$", description="Station name on the line (MQTT topic level).")
    source: SourceConfig = Field(description="Where frames come from: synthetic, folder or genicam.")
    roi: Optional[RoiConfig] = Field(None, description="Region of interest; null inspects the whole frame.")
    pixel_pitch_mm: Optional[float] = Field(None, gt=0, description="Size of one pixel on the part in mm; enables mm² areas.")
    expert: ExpertConfig = Field(description="The region expert backend and its model file.")
    tiling: TilingConfig = Field(default_factory=TilingConfig, description="How frames become model inputs.")
    bank: BankConfig = Field(description="Memory bank of good parts.")
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig, description="Score thresholds.")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="Reject rules.")
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="Decision window and fail-safe verdict.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection and topics.")
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig, description="NG frame archive.")
    assistant: AssistantConfig = Field(default_factory=AssistantConfig, description="Assistant lane.")

    _source_path: Optional[Path] = PrivateAttr(None)
    _source_text: str = PrivateAttr("")

    @model_validator(mode="after")
    def _area_in_mm_needs_pitch(self) -> "Recipe":
        if self.rules.min_area_mm2 is not None and self.pixel_pitch_mm is None:
            raise ValueError("rules.min_area_mm2 needs pixel_pitch_mm (mm per pixel); set it or use rules.min_area_px")
        return self

    @property
    def source_path(self) -> Optional[Path]:
        """The YAML file this recipe was read from (None when built in code)."""
        return self._source_path

    @property
    def topic_root(self) -> str:
        """MQTT topic root without a trailing slash: iad/<line>/<station> unless overridden."""
        return (self.mqtt.topic_root or f"iad/{self.line}/{self.station}").rstrip("/")

    @property
    def sha256(self) -> str:
        """Hash of the recipe text as read from disk (published so the PLC side can see which recipe decided)."""
        text = self._source_text or self.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()

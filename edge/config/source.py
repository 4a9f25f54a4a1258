"""Frame sources: where the lane's images come from (``source.type`` selects one)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from edge.config.base import RecipePath, StrictModel

DefectKind = Literal["scratch", "spot", "crack", "missing"]
DEFECT_KINDS: tuple[DefectKind, ...] = ("scratch", "spot", "crack", "missing")


class SourceConfigBase(StrictModel):
    """What every source config tells the rest of the appliance (see docs/architecture.md, "a new source")."""

    implementation: ClassVar[str]  # "module:Class" of the FrameSource, imported only when used (edge.plugins)

    def pulled(self) -> bool:
        """True when the lane pulls frames when it has room (file replay); False when they are pushed (cameras)."""
        return False

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the frames when the config fixes it, else None."""
        return None


class SyntheticSourceConfig(SourceConfigBase):
    """Rendered textured parts with injected defects: the embedded default and the test bench."""

    implementation: ClassVar[str] = "edge.sources.synthetic:SyntheticSource"

    type: Literal["synthetic"] = Field("synthetic", description="Selects the synthetic source.")
    width: int = Field(448, ge=16, le=16384, description="Frame width in pixels.")
    height: int = Field(448, ge=16, le=16384, description="Frame height in pixels.")
    channels: Literal[1, 3] = Field(3, description="1 for a monochrome camera, 3 for colour (BGR).")
    defect_rate: float = Field(0.3, ge=0.0, le=1.0, description="Fraction of frames that get an injected defect.")
    defect_types: list[DefectKind] = Field(
        default_factory=lambda: list(DEFECT_KINDS),
        description="Defect kinds the renderer may inject.",
    )
    seed: int = Field(0, description="Seed: the same seed renders the same frames and defects.")
    rate_hz: float | None = Field(
        None, gt=0, description="Trigger rate in frames per second; null = as fast as the lane takes them."
    )

    def pulled(self) -> bool:
        return self.rate_hz is None

    def frame_size(self) -> tuple[int, int] | None:
        return self.width, self.height


class FolderSourceConfig(SourceConfigBase):
    """Images read from a folder in name order (PNG, JPEG, BMP, TIFF; 8 or 16 bit)."""

    implementation: ClassVar[str] = "edge.sources.folder:FolderSource"

    type: Literal["folder"] = Field("folder", description="Selects the folder source.")
    path: RecipePath = Field(description="Folder with the images.")
    pattern: str = Field("*", description="Glob pattern of the files to read, e.g. '*.png'.")
    loop: bool = Field(False, description="Start again from the first image after the last one.")
    rate_hz: float | None = Field(None, gt=0, description="Trigger rate in frames per second; null = as fast as possible.")

    def pulled(self) -> bool:
        return self.rate_hz is None


class GenicamNodeSetting(StrictModel):
    """One GenICam feature to set on the camera, applied in recipe order and read back."""

    node: str = Field(description="GenICam feature name, e.g. 'ExposureTime' or 'TriggerMode'.")
    value: bool | int | float | str = Field(description="Value to write; enumerations are given by their symbolic name.")


class GenicamSourceConfig(SourceConfigBase):
    """A GenICam camera through a GenTL producer (.cti), read with harvesters."""

    implementation: ClassVar[str] = "edge.sources.genicam:GenicamSource"

    type: Literal["genicam"] = Field("genicam", description="Selects the GenICam camera source.")
    producer: RecipePath = Field(description="Path of the GenTL producer (.cti) of the camera vendor.")
    serial_number: str | None = Field(None, description="Select the device by serial number.")
    user_defined_name: str | None = Field(None, description="Select the device by its user-defined name (user id).")
    index: int = Field(0, ge=0, description="Select the device by index when no serial number or name is given.")
    settings: list[GenicamNodeSetting] = Field(
        default_factory=list, description="Node settings applied in this order after opening the device."
    )
    fetch_timeout_s: float = Field(2.0, gt=0, description="Seconds to wait for one buffer before reporting a timeout.")
    reconnect_backoff_s: list[float] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0, 5.0, 10.0],
        description="Waits between reconnection attempts after the device is lost (last value repeats).",
    )

    def frame_size(self) -> tuple[int, int] | None:
        """From the Width/Height node settings, when both are set."""
        nodes = {s.node: s.value for s in self.settings}
        width, height = nodes.get("Width"), nodes.get("Height")
        if isinstance(width, int) and isinstance(height, int) and not isinstance(width, bool) and not isinstance(height, bool):
            return width, height
        return None


SourceConfig = Annotated[
    SyntheticSourceConfig | FolderSourceConfig | GenicamSourceConfig,
    Field(discriminator="type"),
]

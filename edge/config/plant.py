"""Plant-floor outputs: Sparkplug B for SCADA, Prometheus metrics, the technician console.

All three are off the real-time path (see docs/sparkplug.md, docs/metrics.md,
docs/console.md); these sections only say whether they run and where.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from edge.config.base import RecipePath, StrictModel, rule_error

_SPARKPLUG_ID = r"^[^/+#\s]+$"  # one MQTT topic level, no wildcards (Sparkplug B 3.0 id rules)


class SparkplugConfig(StrictModel):
    """The station as a Sparkplug B edge node with one device (the station) for SCADA/HMI."""

    enabled: bool = Field(False, description="Publish NBIRTH/DBIRTH/DDATA/NDEATH under spBv1.0/<group_id>/...")
    group_id: str = Field("iad", pattern=_SPARKPLUG_ID, description="Sparkplug group id (first topic level after spBv1.0).")
    edge_node_id: str | None = Field(
        None, pattern=_SPARKPLUG_ID, description="Edge node id; default <line>-<station>."
    )
    device_id: str | None = Field(None, pattern=_SPARKPLUG_ID, description="Device id of the station; default <station>.")
    host: str | None = Field(None, description="Broker of the SCADA side; default mqtt.host (same credentials and TLS as mqtt).")
    port: int | None = Field(None, ge=1, le=65535, description="Broker port; default mqtt.port.")
    keepalive_s: int = Field(10, ge=1, le=3600, description="Keep-alive; the broker publishes NDEATH after 1.5x this when the node vanishes.")
    queue_size: int = Field(256, ge=1, le=100000, description="Decisions waiting to become DDATA; when full, DDATA is skipped and counted (never the decision).")
    bdseq_file: RecipePath = Field(
        Path("sparkplug.bdseq"), description="Where the birth/death sequence number survives restarts (SCADA matches NDEATH to NBIRTH by it)."
    )


class MetricsConfig(StrictModel):
    """Prometheus /metrics endpoint of the station process."""

    port: int | None = Field(None, ge=0, le=65535, description="Serve /metrics on this port; null: no metrics endpoint; 0: any free port.")
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for a Prometheus on another machine).")


class ConsoleTlsConfig(StrictModel):
    """Certificate for the console's HTTPS."""

    cert_file: RecipePath = Field(description="Server certificate (PEM).")
    key_file: RecipePath = Field(description="Server private key (PEM).")


class ConsoleConfig(StrictModel):
    """The technician console (`iad-edge console RECIPE`): its own process, read-only without login."""

    port: int = Field(8090, ge=0, le=65535, description="HTTP(S) port of the console; 0: any free port.")
    host: str = Field("127.0.0.1", description="Address to listen on; editing on a non-loopback address needs tls or allow_insecure_edit.")
    password_file: RecipePath | None = Field(
        None,
        description="File with the hashed editing password (`iad-edge console --hash-password` writes the line); "
        "null: the console is read-only.",
    )
    tls: ConsoleTlsConfig | None = Field(None, description="Serve HTTPS with this certificate.")
    allow_insecure_edit: bool = Field(
        False, description="Allow editing over plain HTTP on a non-loopback address (passwords travel in clear: avoid)."
    )
    last_ng: int = Field(12, ge=1, le=200, description="How many of the newest NG parts the console shows.")
    max_edit_kb: int = Field(256, ge=1, le=4096, description="Largest recipe text the edit box accepts.")

    @model_validator(mode="after")
    def _tls_for_remote_edit(self) -> ConsoleConfig:
        if self.allow_insecure_edit and self.password_file is None:
            raise rule_error("allow_insecure_edit", "only matters with editing: set console.password_file or remove allow_insecure_edit")
        return self

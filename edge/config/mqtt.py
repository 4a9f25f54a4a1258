"""MQTT connection to the PLC-side broker."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge.config.base import RecipePath, StrictModel, rule_error


class MqttTlsConfig(StrictModel):
    """TLS files for the broker connection."""

    ca_file: RecipePath = Field(description="CA certificate (PEM) that signed the broker's certificate.")
    cert_file: RecipePath | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: RecipePath | None = Field(None, description="Client private key (PEM) for mutual TLS.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            present = "cert_file" if missing == "key_file" else "key_file"
            raise rule_error(present, f"mutual TLS needs both cert_file and key_file: add {missing} or remove {present}")
        return self


class OutboxLimitsConfig(StrictModel):
    """Caps on the result outbox, so a long broker outage cannot fill the disk or bury fresh results.

    When a cap is reached the oldest results are dropped (counted on ``status`` as
    ``mqtt.outbox_dropped``); decisions are never in the outbox, so nothing here
    touches them.
    """

    max_rows: int | None = Field(100000, ge=1, description="Most results kept waiting; the oldest beyond it are dropped. null: no row cap.")
    max_mb: float | None = Field(256.0, gt=0, description="Most megabytes of result payloads kept waiting; the oldest beyond it are dropped. null: no size cap.")
    max_age_h: float | None = Field(
        168.0, gt=0, description="Results older than this many hours are dropped undelivered (a week by default). null: kept until delivered."
    )
    drain: Literal["newest_first", "oldest_first"] = Field(
        "newest_first",
        description="Order of delivery after an outage: 'newest_first' sends fresh results before the backlog "
        "(consumers order by trigger_time), 'oldest_first' in trigger order.",
    )


class MqttConfig(StrictModel):
    """Broker address, credentials and topics. Topics live under `iad/<line>/<station>/`."""

    enabled: bool = Field(True, description="Publish decisions over MQTT; false prints them locally only.")
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883 plain, 8883 TLS by convention).")
    client_id: str | None = Field(None, description="MQTT client id; default iad-edge-<line>-<station>.")
    keepalive_s: int = Field(10, ge=1, le=3600, description="Keep-alive interval; the broker publishes the LWT after 1.5x this.")
    username: str | None = Field(None, description="User name for the broker.")
    password_file: RecipePath | None = Field(None, description="File holding the password (never put the password in the YAML).")
    tls: MqttTlsConfig | None = Field(None, description="TLS settings; null for a plain connection.")
    topic_root: str | None = Field(None, description="Topic root; default iad/<line>/<station>.")
    status_interval_s: float = Field(5.0, gt=0, le=3600, description="Seconds between retained status updates (counters).")
    payload_format: Literal["json", "plain"] = Field(
        "json", description="'plain' publishes decisions as 'trigger_id;verdict;score;latency_ms' for PLCs without a JSON parser."
    )
    outbox: RecipePath = Field(
        Path("outbox.sqlite"), description="SQLite outbox that keeps full results until the broker acknowledges them."
    )
    outbox_limits: OutboxLimitsConfig = Field(
        default_factory=OutboxLimitsConfig, description="Caps (rows, megabytes, age) and drain order of the outbox."
    )

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttConfig:
        if self.password_file is not None and not self.username:
            raise rule_error("password_file", "a password_file needs a username: add mqtt.username")
        return self

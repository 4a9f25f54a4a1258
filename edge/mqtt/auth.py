"""Broker credentials and TLS for every MQTT client of the appliance (lane, commands, assistant).

Why one helper: the password lives in a file named by the recipe
(``mqtt.password_file``), never in the YAML, and a missing/empty/unreadable
file or TLS file must be a clear error naming the file, not a connection that
mysteriously fails later. The password file should be readable by the
service user only (mode 0600/0640); a world-readable one is logged as a warning.
"""

from __future__ import annotations

import logging
import ssl
import stat
from pathlib import Path
from typing import Any

from edge.errors import IadError

log = logging.getLogger(__name__)


class MqttCredentialsError(IadError):
    """A password or TLS file named by the recipe cannot be used."""


def read_password(path: Path | None) -> str | None:
    """The password from ``path`` (first line, surrounding whitespace stripped); None when no file is named."""
    if path is None:
        return None
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MqttCredentialsError(f"mqtt.password_file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MqttCredentialsError(f"mqtt.password_file: cannot read {path} ({exc})") from None
    if mode & stat.S_IROTH:
        log.warning("mqtt.password_file %s is readable by every user: chmod 600 it (owner iad)", path)
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        raise MqttCredentialsError(f"mqtt.password_file: {path} is empty (put the password on its first line)")
    return password


def apply_auth(client: Any, cfg: Any) -> None:
    """Set username/password and TLS of a paho client from an :class:`~edge.config.mqtt.MqttConfig`."""
    if cfg.username:
        client.username_pw_set(cfg.username, read_password(cfg.password_file))
    tls = cfg.tls
    if tls is None:
        return
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key)
        if value is not None and not Path(value).is_file():
            raise MqttCredentialsError(f"mqtt.tls.{key}: {value} does not exist")
    try:
        client.tls_set(
            ca_certs=str(tls.ca_file),
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise MqttCredentialsError(f"mqtt.tls: cannot use {tls.ca_file} / {tls.cert_file} / {tls.key_file} ({exc})") from None

"""Options shared by several commands, so that they read and behave the same everywhere.

``--mqtt-host``/``--mqtt-port`` exist on `run`, `assistant` and `demo`; each
falls back to the environment variables ``IAD_MQTT_HOST``/``IAD_MQTT_PORT``
(handy in a unit's EnvironmentFile, see docs/deploy.md), then to the recipe's
``mqtt.host``/``mqtt.port``. Order: option > environment > recipe.
"""

from __future__ import annotations

import argparse
import os

HOST_ENV = "IAD_MQTT_HOST"
PORT_ENV = "IAD_MQTT_PORT"


def add_mqtt_options(parser: argparse.ArgumentParser, host_help: str = "Broker host",
                     port_help: str = "Broker port") -> None:
    """--mqtt-host H / --mqtt-port P with the environment as the default (type conversion included)."""
    parser.add_argument("--mqtt-host", metavar="H", default=os.environ.get(HOST_ENV) or None,
                        help=f"{host_help} (default: ${HOST_ENV} if set, else the recipe's mqtt.host).")
    parser.add_argument("--mqtt-port", type=int, metavar="P", default=os.environ.get(PORT_ENV) or None,
                        help=f"{port_help} (default: ${PORT_ENV} if set, else the recipe's mqtt.port).")

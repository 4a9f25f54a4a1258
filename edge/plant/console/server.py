"""Run the console: refuse unsafe settings, bind, print the URL, serve until SIGTERM/SIGINT.

The console is its own process at a lower CPU priority (nice +10), so a browser
(or ten) can never take CPU time from the lane on a small box.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from edge.errors import IadError
from edge.plant.console.app import ConsoleContext, create_app
from edge.plant.console.auth import Sessions, load_password_hash
from edge.plant.console.edit import RecipeEditor
from edge.plant.console.feed import StationFeed

log = logging.getLogger(__name__)

NICE = 10


class ConsoleConfigError(IadError):
    """Settings the console refuses to start with."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(cfg: Any, host: str) -> None:
    """Editing on a non-loopback address needs TLS or an explicit override (passwords and recipes in clear otherwise)."""
    if cfg.password_file is None or is_loopback(host) or cfg.tls is not None or cfg.allow_insecure_edit:
        return
    raise ConsoleConfigError(
        f"console: refusing to serve editing on {host} over plain HTTP (the password and recipes would travel in clear): "
        "set console.tls (cert_file, key_file), or listen on 127.0.0.1, or remove console.password_file for a read-only "
        "console, or set console.allow_insecure_edit: true on a trusted network"
    )


def serve(recipe: Any, recipe_path: Path, host: str | None = None, port: int | None = None,
          mqtt_host: str | None = None, mqtt_port: int | None = None) -> int:
    """Serve the console for ``recipe`` until interrupted; returns the exit status."""
    cfg = recipe.console
    host = host or cfg.host
    port = cfg.port if port is None else port
    check_exposure(cfg, host)
    password_hash = load_password_hash(cfg.password_file) if cfg.password_file is not None else None
    ctx = ConsoleContext(
        recipe=recipe, recipe_path=Path(recipe_path).resolve(), feed=StationFeed(recipe, mqtt_host, mqtt_port),
        editor=RecipeEditor(Path(recipe_path), cfg.max_edit_kb * 1024), password_hash=password_hash,
        secure_cookie=cfg.tls is not None, sessions=Sessions(),
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConsoleConfigError(f"console: cannot listen on {host}:{port} ({exc.strerror or exc}): "
                                 "choose another console.port or --port") from None
    sock.listen(64)
    bound = sock.getsockname()[1]
    try:
        os.nice(NICE)
    except OSError:
        pass
    scheme = "https" if cfg.tls is not None else "http"
    mode = "editing with login" if password_hash else "read-only"
    print(f"console: {scheme}://{host}:{bound}/ ({mode}; station {recipe.line}/{recipe.station} via MQTT "
          f"{ctx.feed.host}:{ctx.feed.port})", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        create_app(ctx), log_level="warning", lifespan="on", timeout_graceful_shutdown=1,
        ssl_certfile=str(cfg.tls.cert_file) if cfg.tls else None, ssl_keyfile=str(cfg.tls.key_file) if cfg.tls else None,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0

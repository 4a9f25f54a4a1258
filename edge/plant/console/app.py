"""The console's HTTP API and page (Starlette; served by uvicorn in `iad-edge console`).

Read-only for everybody: ``/`` (the page), ``/api/state``, ``/api/events`` (server-sent
events: a snapshot of the recent decisions and the status first, then decision, status,
assistant, explanation), ``/api/ng``, archive images,
``/api/recipe``, ``/api/calibration`` and its plots, ``/api/check`` (validates
a text, changes nothing). Changing something needs a login: ``/api/apply``.
POST bodies are size-limited while they are read; every refusal is one JSON
``{"error": ...}`` the page shows as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge.mqtt.remote import applied_recipe
from edge.plant.console.archive_view import calibration_report, inside, latest_ng, report_folder
from edge.plant.console.auth import Sessions, verify_password
from edge.plant.console.edit import EditRejected, RecipeEditor, file_sha256
from edge.plant.console.feed import StationFeed

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "iad_console"
CSRF_HEADER = "x-iad-console"  # set by the page's fetch(); a cross-site form cannot set it
LOGIN_DELAY_S = 0.5


class BodyTooLarge(Exception):
    pass


@dataclass
class ConsoleContext:
    """Everything the handlers need."""

    recipe: Any
    recipe_path: Path
    feed: StationFeed
    editor: RecipeEditor
    password_hash: str | None
    secure_cookie: bool
    sessions: Sessions


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    body = json.loads(b"".join(chunks) or b"{}")
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def create_app(ctx: ConsoleContext) -> Starlette:
    """The console app for one station."""
    body_limit = ctx.editor.max_bytes * 2 + 4096  # JSON escaping can double a text; the text itself is checked exactly

    def logged_in(request: Request) -> bool:
        return ctx.password_hash is not None and ctx.sessions.valid(request.cookies.get(COOKIE))

    def running_values() -> dict | None:
        status = ctx.feed.status
        return applied_recipe(status)[1] if status else None

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def state(request: Request) -> Response:
        recipe = ctx.recipe
        return JSONResponse({
            "line": recipe.line, "station": recipe.station, "topic_root": recipe.topic_root,
            "mqtt_connected": ctx.feed.connected.is_set(),
            "status": ctx.feed.status, "assistant": ctx.feed.assistant_status,
            "decisions": list(ctx.feed.decisions)[:50],
            "editing": ctx.password_hash is not None, "logged_in": logged_in(request),
            "max_edit_kb": ctx.editor.max_bytes // 1024,
        })

    async def events(request: Request) -> Response:
        q = ctx.feed.subscribe()
        # Taken right after subscribing, with no await in between: every decision is either in the snapshot or
        # queued after it (the MQTT thread hands messages to this event loop), never lost in a gap, never twice.
        snapshot = {"decisions": list(ctx.feed.decisions)[:50], "status": ctx.feed.status}

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 1000\n\n"
                yield f"event: snapshot\ndata: {json.dumps(snapshot, default=str)}\n\n".encode()
                while True:
                    try:
                        event, data = await asyncio.wait_for(q.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()
            finally:
                ctx.feed.unsubscribe(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def ng(request: Request) -> Response:
        entries = await asyncio.to_thread(latest_ng, Path(ctx.recipe.archive.path), ctx.recipe.console.last_ng)
        for entry in entries:  # an explanation that came over MQTT but is not in the archive yet
            if entry["explanation"] is None:
                entry["explanation"] = ctx.feed.explanations.get(f"{entry['session']}/{entry['trigger_id']}")
        return JSONResponse({"entries": entries})

    async def archive_file(request: Request) -> Response:
        day, entry, name = request.path_params["day"], request.path_params["entry"], request.path_params["name"]
        if name not in ("overlay.png", "frame.png", "map.png") or not entry.endswith("_NG"):
            return _error(404, "only overlay.png, frame.png and map.png of NG entries are served")
        path = inside(Path(ctx.recipe.archive.path), day, entry, name)
        if path is None or not path.is_file():
            return _error(404, f"no {name} in archive entry {day}/{entry}")
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    async def recipe_get(request: Request) -> Response:
        try:
            text = ctx.editor.current_text()
        except (OSError, UnicodeDecodeError) as exc:
            return _error(500, f"cannot read {ctx.recipe_path}: {exc}")
        return JSONResponse({"path": str(ctx.recipe_path), "text": text, "sha256": file_sha256(ctx.recipe_path)})

    async def recipe_body(request: Request, consequence: str, shape: str) -> dict[str, Any] | Response:
        """The JSON body of an edit request, or the error response that says why it was not read."""
        try:
            return await _json_body(request, body_limit)
        except BodyTooLarge:
            return _error(413, f"the recipe text is larger than {ctx.editor.max_bytes // 1024} KiB "
                               f"(console.max_edit_kb): {consequence}")
        except ValueError as exc:
            return _error(400, f"expected a JSON body {shape}: {exc}")

    async def check(request: Request) -> Response:
        body = await recipe_body(request, "nothing was checked", '{"text": ...}')
        if isinstance(body, Response):
            return body
        text = body.get("text")
        if not isinstance(text, str):
            return _error(400, "expected a JSON body {\"text\": \"<recipe YAML>\"}")
        result = await asyncio.to_thread(ctx.editor.check, text, running_values())
        return JSONResponse(result.to_json())

    async def apply(request: Request) -> Response:
        if ctx.password_hash is None:
            return _error(403, "editing is off: this console has no console.password_file")
        if not logged_in(request):
            return _error(401, "log in to apply a recipe (read-only without login)")
        if request.headers.get(CSRF_HEADER) != "1":
            return _error(403, "missing the console's request header: apply from the console page")
        body = await recipe_body(request, "nothing was changed", '{"text": ..., "base_sha256": ...}')
        if isinstance(body, Response):
            return body
        text, base = body.get("text"), body.get("base_sha256")
        if not isinstance(text, str) or not (base is None or isinstance(base, str)):
            return _error(400, "expected a JSON body {\"text\": \"<recipe YAML>\", \"base_sha256\": \"<hash>\"}")
        try:
            result = await asyncio.to_thread(ctx.editor.apply, text, base, running_values())
        except EditRejected as exc:
            return _error(exc.status, exc.message, result=exc.result.to_json() if exc.result else None)
        log.info("console: recipe %s written (sha256 %s); the station's live reload applies it", ctx.recipe_path,
                 result.sha256)
        ctx.feed.send_command("status", {"request_id": "console-apply"})  # ask for a fresh status now
        return JSONResponse({"written": True, "sha256": result.sha256, "changes": result.changes})

    async def login(request: Request) -> Response:
        if ctx.password_hash is None:
            return _error(403, "editing is off: this console has no console.password_file")
        try:
            body = await _json_body(request, 4096)
        except (BodyTooLarge, ValueError):
            return _error(400, "expected a JSON body {\"password\": ...}")
        password = body.get("password")
        await asyncio.sleep(LOGIN_DELAY_S)  # slows down guessing
        if not isinstance(password, str) or not verify_password(password, ctx.password_hash):
            return _error(401, "wrong password")
        response = JSONResponse({"logged_in": True})
        response.set_cookie(COOKIE, ctx.sessions.create(), httponly=True, samesite="strict", secure=ctx.secure_cookie,
                            max_age=int(ctx.sessions.lifetime_s))
        return response

    async def logout(request: Request) -> Response:
        ctx.sessions.drop(request.cookies.get(COOKIE))
        response = JSONResponse({"logged_in": False})
        response.delete_cookie(COOKIE)
        return response

    async def calibration(request: Request) -> Response:
        report = await asyncio.to_thread(calibration_report, ctx.recipe_path)
        return JSONResponse({"report": report})

    async def calibration_plot(request: Request) -> Response:
        name = request.path_params["name"]
        path = inside(report_folder(ctx.recipe_path), name) if name.endswith(".png") else None
        if path is None or not path.is_file():
            return _error(404, f"no plot {name} in the calibration report")
        return FileResponse(path)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "time": time.time(), "lost_events": ctx.feed.lost_events})

    routes = [
        Route("/", index),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/ng", ng),
        Route("/api/archive/{day}/{entry}/{name}", archive_file),
        Route("/api/recipe", recipe_get),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/apply", apply, methods=["POST"]),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/calibration", calibration),
        Route("/api/calibration/{name}", calibration_plot),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx.feed.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            ctx.feed.stop()

    return Starlette(routes=routes, lifespan=asynccontextmanager(lifespan))

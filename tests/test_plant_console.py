"""The technician console against a running station (real mosquitto, `iad-edge run`, `iad-edge console`),
over HTTP and in a real browser (Debian's chromium driven by Playwright).

One station + console for the module (started once, a few seconds); the tests that
change the recipe run last. Screenshots go to out/screenshots/; with IAD_UPDATE_SCREENSHOTS=1 they
refresh the pictures in docs/ that docs/console.md shows (a test run never edits tracked files by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

from edge.cli import main as cli_main
from edge.devtools.broker import MosquittoBroker, find_mosquitto
from edge.mqtt.remote import read_status
from tests.fixtures.broker import MqttRecorder
from tests.fixtures.expert import synthetic_frames, write_recipe

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" if os.environ.get("IAD_UPDATE_SCREENSHOTS") == "1" else REPO / "out" / "screenshots"
DOCS.mkdir(parents=True, exist_ok=True)
PASSWORD = "line7-tuning"

pytest.importorskip("starlette", reason="starlette/uvicorn (plant extra) serve the console")


@dataclass
class Plant:
    broker: MosquittoBroker
    recipe: Path
    url: str
    station: subprocess.Popen
    console: subprocess.Popen
    folder: Path
    env: dict


def _console_url(proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        seen.append(line)
        match = re.search(r"console: (https?://\S+/)", line)
        if match:
            return match.group(1)
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"the console did not start (exit {proc.poll()}): {''.join(seen)[-2000:]}")


@pytest.fixture(scope="module")
def plant(tmp_path_factory, tiny_expert_dir, tiny_bank_path):
    if not find_mosquitto():
        pytest.skip("mosquitto binary not found")
    folder = tmp_path_factory.mktemp("plant")
    broker = MosquittoBroker(workdir=tmp_path_factory.mktemp("plant-mosquitto")).start()
    shutil.copy(tiny_bank_path, folder / "bank.npz")
    (folder / "console.pw").write_text(_hash_line(PASSWORD) + "\n")
    recipe = write_recipe(folder, tiny_expert_dir, {
        "source": {"type": "synthetic", "width": 224, "height": 224, "channels": 3, "defect_rate": 0.5, "seed": 3,
                   "rate_hz": 4},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "outbox": "outbox.sqlite", "status_interval_s": 1.0},
        "console": {"port": 0, "password_file": "console.pw", "last_ng": 4},
    })
    good = folder / "good"  # a real calibration run, so the console has a report with plots to show
    good.mkdir()
    for frame in synthetic_frames(10, defect=None, start=7000):
        cv2.imwrite(str(good / f"{frame.name}.png"), frame.image)
    assert cli_main(["calibrate", str(recipe), "--good", str(good), "--synthetic", "4", "--no-progress"]) == 0
    candidate = yaml.safe_load(recipe.read_text())  # shadow mode: a stricter candidate judged on the live frames
    candidate["thresholds"]["image_score"] = 0.1
    (folder / "candidate.yaml").write_text(yaml.safe_dump(candidate, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "IAD_ALLOWED_ROOTS": f"{tiny_expert_dir}:default"}
    station = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(recipe), "--quiet", "--watch-interval", "0.2",
                                "--shadow", str(folder / "candidate.yaml")],
                               cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "station.log", "wb"))
    console = subprocess.Popen([sys.executable, "-m", "edge.cli", "console", str(recipe)], cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = _console_url(console)
        plant = Plant(broker, recipe, url, station, console, folder, env)
        deadline = time.monotonic() + 90  # the station is up and has archived an NG part
        while time.monotonic() < deadline and not _get(plant, "/api/ng")[1]["entries"]:
            assert station.poll() is None, (folder / "station.log").read_text()[-2000:]
            time.sleep(0.3)
        yield plant
    finally:
        for proc in (console, station):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        console.stderr.close()
        broker.close()


def _hash_line(password: str) -> str:
    out = subprocess.run([sys.executable, "-m", "edge.cli", "console", "--hash-password"], input=password + "\n",
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    return out.stdout.strip()


def _request(plant: Plant, path: str, body: Any = None, headers: dict | None = None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(plant.url.rstrip("/") + path, data=data, headers={"Content-Type": "application/json",
                                                                                    **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}"), resp.headers
    except urllib.error.HTTPError as exc:
        raw_body = exc.read()
        try:
            return exc.code, json.loads(raw_body or b"{}"), exc.headers
        except ValueError:  # the router's own plain-text 404
            return exc.code, {"error": raw_body.decode(errors="replace")}, exc.headers


def _get(plant: Plant, path: str):
    return _request(plant, path)[:2]


def _login_cookie(plant: Plant) -> str:
    status, body, headers = _request(plant, "/api/login", {"password": PASSWORD})
    assert status == 200, body
    return headers["Set-Cookie"].split(";")[0]


def _recipe_text(plant: Plant) -> str:
    return plant.recipe.read_text()


# ---------------------------------------------------------------------------------------------- HTTP

def test_the_console_refuses_remote_editing_without_tls(plant):
    out = subprocess.run([sys.executable, "-m", "edge.cli", "console", str(plant.recipe), "--host", "0.0.0.0"],
                         capture_output=True, text=True, env=plant.env, timeout=60)
    assert out.returncode == 1
    assert "refusing to serve editing on 0.0.0.0 over plain HTTP" in out.stderr and "console.tls" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_input_gets_a_clear_message_and_changes_nothing(plant):
    before = _recipe_text(plant)
    cookie = {"Cookie": _login_cookie(plant), "X-IAD-Console": "1"}
    sha = hashlib.sha256(before.encode()).hexdigest()

    huge = before + "# " + "x" * (300 * 1024) + "\n"
    status, body, _ = _request(plant, "/api/apply", {"text": huge, "base_sha256": sha}, cookie)
    assert status == 413 and "console.max_edit_kb" in body["error"]

    status, body, _ = _request(plant, "/api/check", raw=b"{not json")
    assert status == 400 and "JSON" in body["error"]

    outside = before.replace("path: archive", "path: /etc/iad-console-test")
    assert outside != before
    status, body, _ = _request(plant, "/api/apply", {"text": outside, "base_sha256": sha}, cookie)
    assert status == 400 and "outside the allowed roots" in body["error"]
    line = next(i for i, text in enumerate(outside.splitlines(), 1) if "/etc/iad-console-test" in text)
    assert body["result"]["problems"][0]["line"] == line

    leak = "version: 1\ninclude:\n  - /etc/passwd\n"  # an include outside the allowed roots is not even read
    status, body, _ = _request(plant, "/api/check", {"text": leak})
    assert status == 200 and body["ok"] is False and body["problems"][0]["line"] == 3
    assert "outside the allowed roots" in body["problems"][0]["message"] and "root:" not in json.dumps(body)

    status, body, _ = _request(plant, "/api/check", {"text": "version: 1\nline: a\nstation: b: c\n"})  # invalid YAML
    assert status == 200 and body["ok"] is False and body["problems"][0]["line"] == 3

    status, body, _ = _request(plant, "/api/apply", {"text": before, "base_sha256": "0" * 64}, cookie)
    assert status == 409 and "changed since you loaded it" in body["error"]

    status, body, _ = _request(plant, "/api/login", {"password": "wrong"})
    assert status == 401 and body["error"] == "wrong password"
    assert _request(plant, "/api/apply", {"text": before}, {"X-IAD-Console": "1"})[0] == 401
    assert _request(plant, "/api/apply", {"text": before}, {"Cookie": cookie["Cookie"]})[0] == 403  # no page header

    for path in ("/api/archive/..%2F..%2Fetc/x_NG/overlay.png", "/api/archive/2020-01-01/x_NG/result.json",
                 "/api/calibration/..%2Frecipe.yaml"):
        assert _get(plant, path)[0] == 404
    assert _recipe_text(plant) == before
    assert not plant.recipe.with_name(plant.recipe.name + ".prev").exists()


def test_editing_on_a_network_address_is_served_over_tls(plant):
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl not found (.ci/setup installs it)")
    cert, key = plant.folder / "console.crt", plant.folder / "console.key"  # inside the allowed roots
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    data = yaml.safe_load(_recipe_text(plant))
    data["console"].update({"host": "0.0.0.0", "tls": {"cert_file": str(cert), "key_file": str(key)}})
    tls_recipe = plant.folder / "tls.yaml"
    tls_recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "console", str(tls_recipe)], cwd=plant.folder, env=plant.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = _console_url(proc)
        assert url.startswith("https://0.0.0.0:")
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(f"https://127.0.0.1:{port}/api/login", data=json.dumps({"password": PASSWORD}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=context, timeout=30) as resp:
            assert resp.status == 200
            cookie = resp.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/state", context=context, timeout=30) as resp:
            assert json.loads(resp.read())["editing"] is True
    finally:
        proc.terminate()
        proc.wait(20)
        proc.stderr.close()


def test_ng_parts_come_from_the_archive_with_their_overlay(plant):
    status, body = _get(plant, "/api/ng")
    assert status == 200
    entry = body["entries"][0]
    assert entry["id"].endswith("_NG") and "overlay.png" in entry["files"]
    with urllib.request.urlopen(f"{plant.url}api/archive/{entry['id']}/overlay.png", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "image/png" and resp.read(8) == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- browser

@pytest.fixture
def page(chromium_browser):
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()


def test_the_page_loads_without_errors_and_shows_a_decision_within_a_second(plant, page):
    plc = MqttRecorder(plant.broker.host, plant.broker.port, ("iad/testline/st1/decision",), "iad-test-console-plc")
    try:
        page.goto(plant.url)
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        page.wait_for_selector("#ng-parts .card img", timeout=15000)
        seen = len(plc.messages)
        assert plc.wait_for(lambda m: len(m) > seen, 10)
        decision = plc.messages[seen]
        row = page.wait_for_selector(f"#decisions tr[data-trigger='{decision.json['trigger_id']}']", timeout=5000)
        shown_at = int(row.get_attribute("data-shown-at")) / 1000.0  # the page's clock = this machine's clock
        assert shown_at - decision.received_at <= 1.0, f"shown {shown_at - decision.received_at:.3f} s after the PLC got it"
        plc_messages = [m for m in plc.messages if m.received_at <= decision.received_at]
    finally:
        plc.close()
    assert page.inner_text("#state") == "online"
    shown = [int(t) for t in page.eval_on_selector_all("#decisions tbody tr", "rows => rows.map(r => r.dataset.trigger)")]
    assert shown == sorted(set(shown), reverse=True), shown  # newest first, none twice
    lost = int(page.inner_text("#counter-late").split(":")[1]) + int(page.inner_text("#counter-undelivered").split(":")[1])
    if lost == 0:  # every decision was published: none may be missing (another console ran meanwhile, see the TLS test)
        assert shown == list(range(shown[0], shown[0] - len(shown), -1)), shown
    published = {m.json["trigger_id"] for m in plc_messages}  # every decision the PLC got up to then is shown too
    assert published <= set(shown) or min(shown) > min(published), (sorted(published), shown)
    assert int(page.inner_text("#shadow-figures tr[data-key='compared'] td:last-child")) > 0
    page.wait_for_selector("#calibration .calibration-plots img", timeout=5000)
    assert "Calibration report" in page.inner_text("#calibration pre")
    page.screenshot(path=str(DOCS / "console.jpg"), full_page=True, quality=70)
    assert page.errors == []


def test_editing_without_login_is_refused(plant, page):
    page.goto(plant.url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.is_disabled("#apply-btn")
    before = _recipe_text(plant)
    answer = page.evaluate("""async () => {
        const r = await fetch('/api/apply', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-IAD-Console': '1'},
                                             body: JSON.stringify({text: document.getElementById('editor').value + '\\n# edit'})});
        return [r.status, (await r.json()).error];
    }""")
    assert answer == [401, "log in to apply a recipe (read-only without login)"]
    assert _recipe_text(plant) == before
    assert page.errors == [] or all("401" in e for e in page.errors)


def test_an_invalid_edit_shows_the_error_at_its_line(plant, page):
    page.goto(plant.url)
    page.wait_for_selector("body[data-ready='1']")
    text = page.input_value("#editor")
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.strip().startswith("image_score:"))
    lines[number - 1] = lines[number - 1].split(":")[0] + ": lots"
    page.fill("#editor", "\n".join(lines) + "\n")
    page.click("#check-btn")
    problem = page.wait_for_selector(f"#problems li[data-line='{number}']", timeout=10000)
    assert "thresholds.image_score" in problem.inner_text() and f"line {number}" in problem.inner_text()
    assert page.get_attribute(f"#gutter div[data-line='{number}']", "class") == "error-line"
    assert "nothing was changed" in page.inner_text("#edit-message")
    page.screenshot(path=str(DOCS / "console-check-error.jpg"), full_page=True, quality=70)
    assert _recipe_text(plant) != page.input_value("#editor")


def test_a_valid_edit_is_applied_and_the_status_shows_the_new_recipe_hash(plant, page):
    page.goto(plant.url)
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#login-password", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#logout-btn:not([hidden])")
    data = yaml.safe_load(page.input_value("#editor"))
    data["thresholds"]["image_score"] = 0.18
    new_text = yaml.safe_dump(data, sort_keys=False)
    page.fill("#editor", new_text)
    page.click("#check-btn")
    page.wait_for_selector("#problems li.ok")
    assert "~ thresholds.image_score: 0.17 -> 0.18" in page.inner_text("#changes")
    page.click("#apply-btn")
    want = hashlib.sha256(new_text.encode()).hexdigest()
    page.wait_for_selector(f"#edit-message[data-applied='{want}']", timeout=20000)
    assert page.get_attribute("#running-sha", "data-sha") == want
    assert _recipe_text(plant) == new_text
    status = read_status(plant.broker.host, plant.broker.port, "iad/testline/st1/status", 10)
    assert status["recipe_sha256"] == want
    page.screenshot(path=str(DOCS / "console-applied.jpg"), full_page=True, quality=70)
    assert page.errors == []

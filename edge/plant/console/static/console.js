// iad-edge technician console: plain JavaScript, no external resources (the appliance has no internet).
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_ROWS = 50;
let state = { editing: false, loggedIn: false, baseSha: null, runningSha: null };

function text(el, value) { el.textContent = value == null ? "–" : String(value); }
function short(sha) { return sha ? sha.slice(0, 12) : "–"; }
function fmt(x, digits) { return x == null ? "–" : Number(x).toFixed(digits); }

async function api(path, options = {}) {
  const init = Object.assign({ credentials: "same-origin", headers: {} }, options);
  if (init.body !== undefined) {
    init.method = init.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-IAD-Console"] = "1";
  }
  const response = await fetch(path, init);
  let body = {};
  try { body = await response.json(); } catch (e) { body = { error: `HTTP ${response.status}` }; }
  return { status: response.status, ok: response.ok, body };
}

// ---------------------------------------------------------------- live decisions and status
function addDecision(d, fresh) {
  const tbody = $("decisions").tBodies[0];
  const row = document.createElement("tr");
  row.className = d.verdict + (fresh ? " fresh" : "");
  row.dataset.trigger = d.trigger_id;
  row.dataset.shownAt = Date.now();  // when the page showed it (the tests compare it with the MQTT arrival time)
  for (const [cls, value] of [["trigger", d.trigger_id], ["verdict", d.verdict], ["score", fmt(d.score, 4)],
                              ["latency", fmt(d.latency_ms, 1)], ["reason", d.fail_safe ? "fail-safe: " + d.reason : (d.reason || "")]]) {
    const td = document.createElement("td");
    td.className = cls;
    text(td, value);
    row.appendChild(td);
  }
  tbody.insertBefore(row, tbody.firstChild);
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
  if (fresh && d.verdict === "NG") scheduleNg();
}

function showStatus(s) {
  if (!s) return;
  const badge = $("state");
  badge.textContent = s.state || "?";
  badge.className = "badge " + (s.state || "");
  state.runningSha = s.recipe_sha256 || null;
  text($("running-sha"), short(s.recipe_sha256));
  $("running-sha").dataset.sha = s.recipe_sha256 || "";
  text($("engine-sha"), short(s.engine_sha256));
  const c = s.counters || {};
  const counters = $("counters");
  counters.replaceChildren();
  for (const key of ["decisions", "ok", "ng", "fail_safe", "dropped", "late", "undelivered"]) {
    const span = document.createElement("span");
    span.id = "counter-" + key;
    span.textContent = `${key.replace("_", "-")}: ${c[key] || 0}`;
    counters.appendChild(span);
  }
  const extras = s.extras || {};
  showShadow(extras.shadow);
  if (extras.recipe_error) $("edit-message").textContent = "the station refused the last edit: " + extras.recipe_error;
}

function showShadow(shadow) {
  const box = $("shadow");
  if (!shadow) { box.textContent = "no candidate is shadowing"; return; }
  box.replaceChildren();
  const head = document.createElement("p");
  head.textContent = `candidate ${shadow.candidate || "?"} (sha256 ${short(shadow.candidate_sha256)})`;
  box.appendChild(head);
  const table = document.createElement("table");
  table.id = "shadow-figures";
  for (const key of ["compared", "changed", "ok_to_ng", "ng_to_ok", "skipped", "errors"]) {
    const row = table.insertRow();
    row.dataset.key = key;
    row.insertCell().textContent = key.replaceAll("_", " ");
    row.insertCell().textContent = shadow[key] == null ? "–" : shadow[key];
  }
  box.appendChild(table);
  const examples = document.createElement("ul");
  for (const e of (shadow.examples || []).slice(0, 5)) {
    const li = document.createElement("li");
    li.textContent = `#${e.trigger_id}: ${e.live} -> ${e.candidate} (${e.candidate_reason || e.reason || ""})`;
    examples.appendChild(li);
  }
  box.appendChild(examples);
}

// ---------------------------------------------------------------- NG parts
let ngTimer = null;
function scheduleNg() { if (!ngTimer) ngTimer = setTimeout(() => { ngTimer = null; loadNg(); }, 1500); }

async function loadNg() {
  const { body } = await api("/api/ng");
  const cards = $("ng-parts");
  cards.replaceChildren();
  for (const e of body.entries || []) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.trigger = e.trigger_id;
    if (e.files.includes("overlay.png")) {
      const img = document.createElement("img");
      img.src = `/api/archive/${e.id}/overlay.png`;
      img.alt = `overlay of trigger ${e.trigger_id}`;
      card.appendChild(img);
    }
    const head = document.createElement("div");
    head.innerHTML = "<b></b> score <span></span>";
    head.querySelector("b").textContent = `#${e.trigger_id}`;
    head.querySelector("span").textContent = fmt(e.score, 4);
    card.appendChild(head);
    const reason = document.createElement("div");
    reason.textContent = e.fail_safe ? "fail-safe: " + e.reason : e.reason;
    card.appendChild(reason);
    const regions = document.createElement("ul");
    for (const r of e.regions.filter((r) => r.rejects)) {
      const li = document.createElement("li");
      li.textContent = `${r.location || ""} ${r.area_px} px peak ${fmt(r.peak, 3)}${r.defect_type ? " " + r.defect_type : ""}`;
      regions.appendChild(li);
    }
    card.appendChild(regions);
    const ex = e.explanation;
    if (ex && ex.explanations) {
      const p = document.createElement("p");
      p.className = "explanation";
      p.textContent = ex.explanations.map((x) => x.text || x.explanation || JSON.stringify(x)).join(" ");
      card.appendChild(p);
    }
    cards.appendChild(card);
  }
  if (!cards.children.length) cards.textContent = "no NG part in the archive yet";
}

// ---------------------------------------------------------------- recipe editor
function renderGutter(problemLines) {
  const lines = $("editor").value.split("\n").length;
  const gutter = $("gutter");
  gutter.replaceChildren();
  for (let i = 1; i <= lines; i++) {
    const div = document.createElement("div");
    div.textContent = i;
    div.dataset.line = i;
    if (problemLines.has(i)) div.className = "error-line";
    gutter.appendChild(div);
  }
  const editor = $("editor");
  editor.style.height = "auto";
  editor.style.height = editor.scrollHeight + "px";
}

function goToLine(line) {
  const editor = $("editor");
  const lines = editor.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  editor.focus();
  editor.setSelectionRange(offset, offset + (lines[line - 1] || "").length);
}

function showCheck(result, message) {
  const list = $("problems");
  list.replaceChildren();
  const problemLines = new Set();
  if (result && result.problems) {
    for (const p of result.problems) {
      const li = document.createElement("li");
      if (p.line) {
        problemLines.add(p.line);
        li.dataset.line = p.line;
        li.textContent = `line ${p.line}${p.column ? ", col " + p.column : ""}: ${p.message}`;
        li.addEventListener("click", () => goToLine(p.line));
      } else {
        li.textContent = (p.file ? p.file + ": " : "") + p.message;
      }
      list.appendChild(li);
    }
  }
  if (result && result.ok) {
    const li = document.createElement("li");
    li.className = "ok";
    li.textContent = `OK: valid recipe (sha256 ${short(result.sha256)})`;
    list.appendChild(li);
  }
  renderGutter(problemLines);
  const box = $("changes-box");
  if (result && result.ok) {
    box.hidden = false;
    const changes = $("changes");
    changes.replaceChildren();
    for (const c of result.changes.length ? result.changes : ["no effective value would change"]) {
      const li = document.createElement("li");
      li.textContent = c;
      changes.appendChild(li);
    }
    $("diff").textContent = result.text_diff || "(same text)";
  } else {
    box.hidden = true;
  }
  $("edit-message").textContent = message || "";
}

async function loadRecipe() {
  const { ok, body } = await api("/api/recipe");
  if (!ok) { $("edit-message").textContent = body.error; return; }
  $("editor").value = body.text;
  state.baseSha = body.sha256;
  text($("recipe-path"), body.path);
  $("recipe-sha").textContent = "file sha256 " + short(body.sha256);
  showCheck(null, "");
}

async function check() {
  const { ok, body } = await api("/api/check", { body: JSON.stringify({ text: $("editor").value }) });
  if (!ok) { showCheck({ problems: [{ message: body.error }] }, ""); return null; }
  showCheck(body, body.ok ? "" : `${body.problems.length} problem(s): nothing was changed`);
  return body;
}

async function apply() {
  const { ok, body } = await api("/api/apply", {
    body: JSON.stringify({ text: $("editor").value, base_sha256: state.baseSha }),
  });
  if (!ok) {
    showCheck(body.result || { problems: [] }, body.error);
    return;
  }
  state.baseSha = null;
  $("edit-message").textContent = `written (sha256 ${short(body.sha256)}); waiting for the station to apply it…`;
  const want = body.sha256;
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (state.runningSha === want) {
      $("edit-message").textContent = `applied: the station runs recipe ${short(want)}`;
      $("edit-message").dataset.applied = want;
      await loadRecipe();
      $("edit-message").textContent = `applied: the station runs recipe ${short(want)}`;
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  $("edit-message").textContent = `written, but the station has not reported recipe ${short(want)} yet (is live reload on?)`;
}

// ---------------------------------------------------------------- login
function showLogin() {
  $("login-box").hidden = !state.editing;
  $("login-state").textContent = state.loggedIn ? "editing" : "read-only";
  $("login-password").hidden = state.loggedIn;
  $("login-btn").hidden = state.loggedIn;
  $("logout-btn").hidden = !state.loggedIn;
  $("apply-btn").disabled = !state.loggedIn;
  $("apply-btn").title = state.loggedIn ? "" : (state.editing ? "log in to apply" : "editing is off on this console");
}

async function login() {
  const { ok, body } = await api("/api/login", { body: JSON.stringify({ password: $("login-password").value }) });
  $("login-password").value = "";
  state.loggedIn = ok;
  showLogin();
  if (!ok) $("login-state").textContent = body.error;
}

async function logout() {
  await api("/api/logout", { body: "{}" });
  state.loggedIn = false;
  showLogin();
}

// ---------------------------------------------------------------- calibration report
async function loadCalibration() {
  const { body } = await api("/api/calibration");
  const box = $("calibration");
  const report = body.report;
  if (!report) { box.textContent = "no calibration report beside the recipe yet (iad-edge calibrate writes one)"; return; }
  box.replaceChildren();
  const when = document.createElement("p");
  when.textContent = `${report.path}, written ${new Date(report.written_at * 1000).toLocaleString()}`;
  box.appendChild(when);
  const plots = document.createElement("div");
  plots.className = "calibration-plots";
  for (const name of report.plots) {
    const img = document.createElement("img");
    img.src = "/api/calibration/" + encodeURIComponent(name);
    img.alt = name;
    plots.appendChild(img);
  }
  box.appendChild(plots);
  const pre = document.createElement("pre");
  pre.textContent = report.markdown;
  box.appendChild(pre);
}

// ---------------------------------------------------------------- start
async function start() {
  const { body } = await api("/api/state");
  text($("station"), `${body.line} / ${body.station}`);
  state.editing = body.editing;
  state.loggedIn = body.logged_in;
  showLogin();
  showStatus(body.status);
  const events = new EventSource("/api/events");
  events.addEventListener("snapshot", (e) => {  // first message of every (re)connection: no gap, no duplicate
    const snap = JSON.parse(e.data);
    $("decisions").tBodies[0].replaceChildren();
    for (const d of (snap.decisions || []).slice().reverse()) addDecision(d, false);
    showStatus(snap.status);
  });
  events.addEventListener("decision", (e) => addDecision(JSON.parse(e.data), true));
  events.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
  events.addEventListener("explanation", () => scheduleNg());
  $("check-btn").addEventListener("click", check);
  $("apply-btn").addEventListener("click", apply);
  $("reload-btn").addEventListener("click", loadRecipe);
  $("login-btn").addEventListener("click", login);
  $("login-password").addEventListener("keydown", (e) => { if (e.key === "Enter") login(); });
  $("logout-btn").addEventListener("click", logout);
  $("editor").addEventListener("input", () => renderGutter(new Set()));
  await Promise.all([loadRecipe(), loadNg(), loadCalibration()]);
  document.body.dataset.ready = "1";
}

start();

// tapfleet dashboard: a single ES module, no build step. Hash routes render pages from the
// JSON API (/api/v1); the browser session is an HttpOnly cookie and every state-changing
// request repeats the session's CSRF token in X-CSRF-Token.

const main = document.getElementById("main");
let me = null; // {username, role, csrf_token}
let stopPage = () => {}; // cleanup of the current page (timers, event streams)

// ---------- helpers

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const h = (html) => { main.innerHTML = html; main.focus({ preventScroll: true }); };
const fmtTime = (ms) => (ms == null ? "–" : new Date(ms).toLocaleString());
const fmtDur = (ms) => { const s = Math.round((ms ?? 0) / 1000); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; };
const fmtBytes = (b) => { if (b == null) return "–"; const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; } return `${b.toFixed(i ? 1 : 0)} ${u[i]}`; };
const num = (v, d = 2) => (v == null ? "–" : Number(v).toFixed(d));
const party = (p) => esc(p?.display_name ? `${p.display_name} <${p.number}>` : p?.number || "–");

class ApiError extends Error { constructor(status, msg, data) { super(msg); this.status = status; this.data = data; } }

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const method = opts.method || "GET";
  if (method !== "GET" && me?.csrf_token) headers["X-CSRF-Token"] = me.csrf_token;
  let body = opts.body;
  if (body !== undefined && typeof body !== "string") { body = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, { method, headers, body, credentials: "same-origin" });
  if (r.status === 401 && path !== "/api/v1/auth/login") { me = null; location.hash = "#/login"; throw new ApiError(401, "please log in"); }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) throw new ApiError(r.status, data?.error || text || r.statusText, data);
  return data;
}

function showUser() {
  document.getElementById("who").textContent = me ? `${me.username} (${me.role})` : "";
  document.getElementById("logout").hidden = !me;
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/api/v1/auth/logout", { method: "POST" }); } catch { /* gone anyway */ }
  me = null; showUser(); location.hash = "#/login";
});

// ---------- pages

function loginPage() {
  h(`<form class="card login" id="loginform" aria-labelledby="loginh">
      <h1 id="loginh">Log in</h1>
      <label for="username">User name</label><input id="username" name="username" autocomplete="username" required>
      <label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
      <button type="submit" id="loginbtn">Log in</button>
      <p id="loginerr" class="err" role="alert"></p>
    </form>`);
  document.getElementById("loginform").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      me = await api("/api/v1/auth/login", { method: "POST", body: { username: ev.target.username.value, password: ev.target.password.value } });
      showUser(); location.hash = "#/fleet";
    } catch (e) { document.getElementById("loginerr").textContent = e.message; }
  });
}

const pct = (t) => (t && t.cache_capacity_bytes ? `${Math.round(100 * t.cache_used_bytes / t.cache_capacity_bytes)} %` : "–");

// A line chart of `key` over the samples (the last 24 h), drawn on a canvas.
function chart(canvas, samples, key, color = "#1f5fbf") {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.width = Math.max(1, canvas.clientWidth * dpr), hh = canvas.height = Math.max(1, canvas.clientHeight * dpr);
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, hh);
  const now = Date.now(), t0 = now - 24 * 3600 * 1000;
  const vals = samples.map((x) => (typeof key === "function" ? key(x) : x[key]) ?? 0);
  const max = Math.max(1, ...vals);
  g.strokeStyle = "#d9dde4"; g.strokeRect(0, 0, w, hh);
  g.strokeStyle = color; g.lineWidth = 1.5 * dpr; g.beginPath();
  samples.forEach((x, i) => {
    const px = ((x.at_ms - t0) / (now - t0)) * w, py = hh - (vals[i] / max) * (hh - 4 * dpr) - 2 * dpr;
    if (i) g.lineTo(px, py); else g.moveTo(px, py);
  });
  g.stroke();
  canvas.setAttribute("aria-label", `${canvas.getAttribute("aria-label")?.split(":")[0] || "chart"}: ${samples.length} samples, max ${max}`);
}

// Active alerts as pills (severity colour, message as tooltip).
const alertPills = (alerts) => (alerts || []).map((a) =>
  `<span class="pill alert ${a.severity === "critical" ? "critical" : "warning"}" data-rule="${esc(a.rule)}" title="${esc(a.message)}">${esc(a.rule.replace(/_/g, " "))}</span>`).join(" ");

function edgeRow(e, alerts) {
  const state = e.online ? `<span class="pill online">online</span>` : `<span class="pill offline">offline</span>`;
  const cfg = e.config_version_reported === e.config_version_desired ? `v${e.config_version_desired ?? "–"}`
    : `<span class="warn">v${e.config_version_reported ?? "–"} → v${e.config_version_desired ?? "–"}</span>`;
  return `<tr data-edge="${esc(e.edge_id)}"><td><a href="#/edges/${encodeURIComponent(e.edge_id)}">${esc(e.edge_id)}</a><div class="muted">${esc(e.hostname)}</div></td>
    <td class="state">${state}</td><td class="alerts">${alertPills(alerts)}</td><td>${e.telemetry?.active_calls ?? "–"}</td><td>${e.telemetry?.drops ?? "–"}</td>
    <td>${pct(e.telemetry)}</td><td>${fmtBytes(e.telemetry?.backlog_bytes)}</td>
    <td><canvas class="chart" data-spark="${esc(e.edge_id)}" aria-label="Calls over 24 hours of ${esc(e.edge_id)}"></canvas></td>
    <td>${esc(e.software_version)}</td><td>${cfg}${e.config_error ? `<div class="err">${esc(e.config_error)}</div>` : ""}</td>
    <td>${fmtTime(e.last_seen_ms)}</td></tr>`;
}

function fleetPage() {
  h(`<h1>Fleet</h1>
    <div class="actions"><button id="addedge" type="button">Add an edge</button></div>
    <div id="enroll"></div>
    <div class="scroll"><table aria-label="Edges"><thead><tr><th>Edge</th><th>State</th><th>Alerts</th><th>Calls now</th><th>Drops</th><th>Cache</th><th>Backlog</th><th>Calls, 24 h</th><th>Version</th><th>Config</th><th>Last seen</th></tr></thead>
    <tbody id="edges"><tr><td colspan="11">Loading…</td></tr></tbody></table></div>
    <p class="muted" id="live" aria-live="off"></p>`);
  const history = new Map(); // edge id -> samples (refreshed every minute)
  const drawSparks = () => {
    for (const c of document.querySelectorAll("canvas[data-spark]")) chart(c, history.get(c.dataset.spark) || [], "active_calls");
  };
  const loadHistory = async (edges) => {
    for (const e of edges) {
      try { history.set(e.edge_id, (await api(`/api/v1/edges/${encodeURIComponent(e.edge_id)}/telemetry`)).samples); } catch { /* next minute */ }
    }
    drawSparks();
  };
  let lastEdges = [];
  let active = []; // active alerts (from the API, then the event stream)
  const render = (edges) => {
    lastEdges = edges;
    document.getElementById("edges").innerHTML = edges.length ? edges.map((e) => edgeRow(e, active.filter((a) => a.edge_id === e.edge_id))).join("")
      : `<tr><td colspan="11">No edge yet: use “Add an edge”.</td></tr>`;
    drawSparks();
  };
  Promise.all([api("/api/v1/edges"), api("/api/v1/alerts?active=true").catch(() => ({ alerts: [] }))])
    .then(([d, a]) => { active = a.alerts || []; render(d.edges); loadHistory(d.edges); }).catch(() => {});
  const timer = setInterval(() => loadHistory(lastEdges), 60000);
  const es = new EventSource("/api/v1/events/stream");
  es.addEventListener("edges", (m) => {
    const d = JSON.parse(m.data);
    if (d.edges) { render(d.edges); document.getElementById("live").textContent = `Live · updated ${new Date(d.at_ms).toLocaleTimeString()}`; }
  });
  es.addEventListener("alerts", (m) => { active = JSON.parse(m.data).alerts || []; render(lastEdges); });
  stopPage = () => { es.close(); clearInterval(timer); };
  document.getElementById("addedge").addEventListener("click", addEdge);
}

async function addEdge() {
  const box = document.getElementById("enroll");
  try {
    const t = await api("/api/v1/tokens", { method: "POST", body: { tenant: "default", expires: "24h", uses: 1 } });
    const token = t.token;
    const host = location.hostname;
    box.innerHTML = `<div class="card"><h2>Install an edge</h2><p>Run on the edge host (the token enrolls one edge within 24 hours and is shown only now):</p>
      <pre aria-label="Install command">printf %s '${esc(token)}' | sudo install -D -m 600 /dev/stdin /etc/tapfleet/enroll.token && sudo tapfleet-edge run --broker mqtt://${esc(host)}:1883 --token-file /etc/tapfleet/enroll.token --data /var/lib/tapfleet-edge</pre></div>`;
  } catch (e) {
    box.innerHTML = `<div class="card"><p class="err" role="alert">Could not create an enrollment token: ${esc(e.message)}</p>
      <p class="muted">On the manager host, <code>tapfleet-manager token show --data DIR</code> prints the default token.</p></div>`;
  }
}

// A config layer editor (edge overrides, fleet defaults, a group): the layer's own document,
// validated by the manager before saving; every error names its field and is shown under the
// text. `p` is the ids' prefix; `save(text)` PUTs and answers the API's reply.
function configEditor(box, { p, title, hint, load, validateUrl, save, saved, label = "Fields to set (JSON or TOML; empty: none)" }) {
  box.innerHTML = `<form class="card" id="${p}form" aria-labelledby="${p}h" novalidate><h2 id="${p}h">${esc(title)}</h2>
    <p class="muted">${hint}</p>
    <label for="${p}text">${esc(label)}</label>
    <textarea id="${p}text" spellcheck="false" aria-describedby="${p}errors"></textarea>
    <ul id="${p}errors" class="fielderrs err" aria-live="assertive"></ul>
    <div class="actions"><button type="button" id="${p}validate" class="secondary">Validate</button><button type="submit" id="${p}save">Save and publish</button></div>
    <p id="${p}msg" role="status"></p></form>`;
  const text = document.getElementById(`${p}text`), errs = document.getElementById(`${p}errors`), msg = document.getElementById(`${p}msg`);
  const say = (cls, t) => { msg.className = cls; msg.textContent = t; };
  const showErrors = (list) => {
    text.setAttribute("aria-invalid", list.length ? "true" : "false");
    errs.innerHTML = list.map((e) => `<li data-path="${esc(e.path)}"><code>${esc(e.path || "config")}</code> ${esc(e.message)}</li>`).join("");
  };
  const body = () => text.value.trim() || "{}";
  const validate = async () => {
    showErrors([]);
    try {
      const url = typeof validateUrl === "function" ? validateUrl() : validateUrl;
      await api(url, { method: "POST", body: body() });
      return true;
    } catch (e) {
      if (e.status === 400 && Array.isArray(e.data?.errors)) { showErrors(e.data.errors); say("err", "Not saved: fix the fields above."); } else say("err", e.message);
      return false;
    }
  };
  document.getElementById(`${p}validate`).addEventListener("click", async () => { if (await validate()) say("ok", "Valid."); });
  document.getElementById(`${p}form`).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("", "Validating…");
    if (!(await validate())) return;
    try { const d = await save(body()); say("ok", saved(d)); } catch (e) {
      if (Array.isArray(e.data?.errors)) showErrors(e.data.errors);
      say("err", e.message);
    }
  });
  const reload = async () => {
    try {
      const layer = await load();
      const doc = layer?.config ?? {};
      text.value = Object.keys(doc).length ? JSON.stringify(doc, null, 2) : "{}";
      return layer;
    } catch (e) { say("err", e.message); return null; }
  };
  return { reload, text };
}

const changedText = (d) => {
  const c = d.changed || [];
  return c.length ? `Published: ${c.map((x) => `${x.edge_id} v${x.version}`).join(", ")}.` : "Saved: no edge's config changed.";
};

async function edgePage(id) {
  h(`<h1>Edge ${esc(id)}</h1><div id="edge">Loading…</div>`);
  const enc = encodeURIComponent(id);
  let e;
  try { e = await api(`/api/v1/edges/${enc}`); } catch (err) { document.getElementById("edge").innerHTML = `<p class="err">${esc(err.message)}</p>`; return; }
  document.getElementById("edge").innerHTML = `<div class="two">
    <div class="card"><h2>State</h2><dl class="kv">
      <dt>State</dt><dd id="estate">${e.online ? "online" : "offline"}</dd><dt>Host</dt><dd>${esc(e.hostname)}</dd>
      <dt>Tenant</dt><dd>${esc(e.tenant)}</dd><dt>Software</dt><dd>${esc(e.software_version)}</dd>
      <dt>Desired config</dt><dd id="desired">v${e.config_version_desired ?? "–"}</dd>
      <dt>Reported config</dt><dd id="reported">v${e.config_version_reported ?? "–"}</dd>
      <dt>Config error</dt><dd id="cfgerr" class="err">${esc(e.config_error || "")}</dd>
      <dt>Last seen</dt><dd id="seen">${fmtTime(e.last_seen_ms)}</dd>
      <dt>Calls now</dt><dd id="calls">${e.telemetry?.active_calls ?? "–"}</dd>
      <dt>Drops</dt><dd id="drops">${e.telemetry?.drops ?? "–"}</dd>
      <dt>Cache</dt><dd id="cache">${pct(e.telemetry)} of ${fmtBytes(e.telemetry?.cache_capacity_bytes)}</dd>
      <dt>Upload backlog</dt><dd id="backlog">${fmtBytes(e.telemetry?.backlog_bytes)}</dd></dl>
      <h2>Last 24 hours</h2>
      <p class="muted">Calls</p><canvas class="chart" id="ch_calls" aria-label="Calls over 24 hours"></canvas>
      <p class="muted">Cache fill</p><canvas class="chart" id="ch_cache" aria-label="Cache fill over 24 hours"></canvas>
      <p class="muted">Upload backlog</p><canvas class="chart" id="ch_backlog" aria-label="Upload backlog over 24 hours"></canvas></div>
    <div><div id="cfgbox"></div>
    <div class="card"><h2>Effective config</h2><p id="cfgsync" class="muted"></p>
      <pre id="effective" aria-label="Effective config">…</pre></div></div></div>
    <div class="card"><h2>Config history</h2><div class="scroll"><table aria-label="Config history"><thead><tr><th>Version</th><th>When</th><th>Who</th><th>Cause</th><th>Config</th></tr></thead>
      <tbody id="cfghistory"></tbody></table></div></div>`;
  const loadEffective = async () => {
    try {
      const x = await api(`/api/v1/edges/${enc}/config/effective`);
      document.getElementById("effective").textContent = JSON.stringify(x.effective ?? {}, null, 2);
      document.getElementById("cfgsync").innerHTML = `Desired <strong>v${x.desired_version ?? "–"}</strong>, reported <strong>v${x.reported_version ?? "–"}</strong>: `
        + (x.in_sync ? `<span class="ok">in sync</span>` : x.config_error ? `<span class="err">refused: ${esc(x.config_error)}</span>` : `<span class="warn">waiting for the edge</span>`)
        + (x.groups?.length ? ` · groups: ${x.groups.map((g) => `<a href="#/config">${esc(g)}</a>`).join(", ")}` : "");
    } catch (err) { document.getElementById("cfgsync").textContent = err.message; }
  };
  const loadHistory = async () => {
    try {
      const { history } = await api(`/api/v1/edges/${enc}/config/history`);
      document.getElementById("cfghistory").innerHTML = history.map((v) => `<tr data-version="${v.version}"><td>v${v.version}</td><td>${fmtTime(v.at_ms)}</td><td>${esc(v.actor)}</td><td>${esc(v.cause || "–")}</td>
        <td><details><summary>show</summary><pre>${esc(JSON.stringify(v.config, null, 2))}</pre></details></td></tr>`).join("") || `<tr><td colspan="5">No version yet.</td></tr>`;
    } catch (err) { document.getElementById("cfghistory").innerHTML = `<tr><td colspan="5" class="err">${esc(err.message)}</td></tr>`; }
  };
  const editor = configEditor(document.getElementById("cfgbox"), {
    p: "cfg", title: "This edge's overrides",
    hint: "Only the fields this edge sets itself; everything else comes from the fleet defaults and its groups (<a href=\"#/config\">Config</a>). An empty document: no override.",
    load: () => api(`/api/v1/edges/${enc}/config`),
    validateUrl: `/api/v1/config/validate?edge=${enc}`,
    save: (body) => api(`/api/v1/edges/${enc}/config`, { method: "PUT", body }),
    saved: (d) => { loadEffective(); loadHistory(); return (d.changed || []).length ? `Published version ${d.version}.` : `Saved: the effective config is unchanged (version ${d.version}).`; },
  });
  await Promise.all([editor.reload(), loadEffective(), loadHistory()]);
  const charts = async () => {
    try {
      const { samples } = await api(`/api/v1/edges/${enc}/telemetry`);
      chart(document.getElementById("ch_calls"), samples, "active_calls");
      chart(document.getElementById("ch_cache"), samples, (x) => (x.cache_capacity_bytes ? Math.round(100 * x.cache_used_bytes / x.cache_capacity_bytes) : 0), "#1a7f46");
      chart(document.getElementById("ch_backlog"), samples, "backlog_bytes", "#9a6700");
    } catch { /* next minute */ }
  };
  charts();
  const timer = setInterval(charts, 60000);
  const es = new EventSource("/api/v1/events/stream");
  let versions = `${e.config_version_desired}/${e.config_version_reported}/${e.config_error}`;
  es.addEventListener("edges", (m) => {
    const d = JSON.parse(m.data);
    const x = (d.edges || []).find((y) => y.edge_id === id);
    if (!x) return;
    document.getElementById("calls").textContent = x.telemetry?.active_calls ?? "–";
    document.getElementById("drops").textContent = x.telemetry?.drops ?? "–";
    document.getElementById("cache").textContent = `${pct(x.telemetry)} of ${fmtBytes(x.telemetry?.cache_capacity_bytes)}`;
    document.getElementById("backlog").textContent = fmtBytes(x.telemetry?.backlog_bytes);
    document.getElementById("estate").textContent = x.online ? "online" : "offline";
    document.getElementById("desired").textContent = `v${x.config_version_desired ?? "–"}`;
    document.getElementById("reported").textContent = `v${x.config_version_reported ?? "–"}`;
    document.getElementById("cfgerr").textContent = x.config_error || "";
    document.getElementById("seen").textContent = fmtTime(x.last_seen_ms);
    const v = `${x.config_version_desired}/${x.config_version_reported}/${x.config_error}`;
    if (v !== versions) { versions = v; loadEffective(); loadHistory(); }
  });
  stopPage = () => { es.close(); clearInterval(timer); };
}

async function configPage() {
  h(`<h1>Config</h1>
    <p class="muted">An edge's config is the fleet defaults, then its groups in name order, then its own overrides (on its page), each setting only some fields. A change reaches every edge it applies to, and is refused if any of them would get an invalid config.</p>
    <div class="two"><div id="defbox"></div>
    <div><div class="card"><h2>Groups</h2><div class="scroll"><table aria-label="Groups"><thead><tr><th>Group</th><th>Members</th><th>Updated</th><th></th></tr></thead><tbody id="groups"></tbody></table></div></div>
      <div class="card"><h2>Edit a group</h2>
        <label for="grpname">Group name</label><input id="grpname" placeholder="e.g. berlin" autocomplete="off">
        <label for="grpmembers">Members (edge ids, comma separated)</label><input id="grpmembers" autocomplete="off"></div>
      <div id="grpbox"></div></div></div>`);
  const defaults = configEditor(document.getElementById("defbox"), {
    p: "def", title: "Fleet defaults", hint: "Applies to every edge unless a group or the edge sets the field.",
    load: () => api("/api/v1/config/defaults"),
    validateUrl: "/api/v1/config/validate",
    save: (body) => api("/api/v1/config/defaults", { method: "PUT", body }),
    saved: changedText,
  });
  const name = () => document.getElementById("grpname").value.trim();
  const group = configEditor(document.getElementById("grpbox"), {
    p: "grp", title: "Group config", hint: "Fields this group sets for its members.", label: "Fields to set (JSON)",
    load: async () => (name() ? api(`/api/v1/config/groups/${encodeURIComponent(name())}`) : { config: {} }),
    validateUrl: () => `/api/v1/config/validate?group=${encodeURIComponent(name())}`,
    save: (body) => {
      if (!name()) throw new ApiError(400, "Give the group a name.");
      let config;
      try { config = JSON.parse(body); } catch (x) { throw new ApiError(400, `A group's config must be JSON: ${x.message}`); }
      const members = document.getElementById("grpmembers").value.split(",").map((m) => m.trim()).filter(Boolean);
      return api(`/api/v1/config/groups/${encodeURIComponent(name())}`, { method: "PUT", body: { members, config } });
    },
    saved: (d) => { loadGroups(); return changedText(d); },
  });
  const loadGroups = async () => {
    const { groups } = await api("/api/v1/config/groups");
    document.getElementById("groups").innerHTML = groups.map((g) => `<tr data-group="${esc(g.name)}"><td>${esc(g.name)}</td><td>${g.members.map((m) => `<a href="#/edges/${encodeURIComponent(m)}">${esc(m)}</a>`).join(", ") || "–"}</td>
      <td>${fmtTime(g.updated_ms)} ${esc(g.updated_by || "")}</td><td><button type="button" class="secondary" data-edit="${esc(g.name)}">Edit</button></td></tr>`).join("") || `<tr><td colspan="4">No group yet.</td></tr>`;
    for (const b of document.querySelectorAll("#groups button[data-edit]")) {
      b.addEventListener("click", async () => {
        const g = groups.find((x) => x.name === b.dataset.edit);
        document.getElementById("grpname").value = g.name;
        document.getElementById("grpmembers").value = g.members.join(", ");
        await group.reload();
      });
    }
  };
  await Promise.all([defaults.reload(), group.reload(), loadGroups()]);
}

const FILTERS = [
  ["number", "Number (caller or callee, prefix)", "text"], ["from", "From", "datetime-local"], ["to", "To", "datetime-local"],
  ["edge", "Edge", "text"], ["min_duration", "Min duration (s)", "number"], ["max_mos", "Max MOS", "number"],
  ["min_loss", "Min loss (%)", "number"], ["call_id", "Call-ID", "text"],
];

function recordingsPage(params) {
  const v = (k) => esc(params.get(k) || "");
  h(`<h1>Recordings</h1>
    <form class="card filters" id="search" role="search" aria-label="Search recordings">
      ${FILTERS.map(([k, l, t]) => `<div><label for="f_${k}">${l}</label><input id="f_${k}" name="${k}" type="${t}" ${t === "number" ? 'step="any" min="0"' : ""} value="${v(k)}"></div>`).join("")}
      <div><label for="f_complete">Complete</label><select id="f_complete" name="complete">
        <option value="">any</option><option value="true" ${params.get("complete") === "true" ? "selected" : ""}>complete</option>
        <option value="false" ${params.get("complete") === "false" ? "selected" : ""}>incomplete</option></select></div>
      <div><button type="submit" id="searchbtn">Search</button></div>
    </form>
    <p id="searcherr" class="err" role="alert"></p>
    <div class="scroll"><table aria-label="Recordings"><thead><tr><th>Start</th><th>Caller</th><th>Callee</th><th>Duration</th><th>MOS</th><th>Loss</th><th>Edge</th><th>State</th></tr></thead>
    <tbody id="results"></tbody></table></div>
    <div class="actions"><button id="more" type="button" class="secondary" hidden>More</button></div>`);
  document.getElementById("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, val] of new FormData(ev.target)) if (val) q.set(k, val);
    location.hash = `#/recordings?${q}`;
  });
  const q = new URLSearchParams();
  for (const [k, val] of params) {
    if (!val) continue;
    q.set(k, (k === "from" || k === "to") ? new Date(val).toISOString() : val);
  }
  q.set("limit", "50");
  const tbody = document.getElementById("results");
  const more = document.getElementById("more");
  const page = async (cursor) => {
    if (cursor) q.set("cursor", cursor); else q.delete("cursor");
    try {
      const d = await api(`/api/v1/recordings?${q}`);
      if (!cursor) tbody.innerHTML = "";
      tbody.insertAdjacentHTML("beforeend", d.recordings.map((r) => `<tr>
        <td><a href="#/recordings/${encodeURIComponent(r.recording_id)}">${esc(new Date(r.start).toLocaleString())}</a></td>
        <td>${party(r.caller)}</td><td>${party(r.callee)}</td><td>${fmtDur(r.duration_ms)}</td>
        <td>${num(r.mos)}</td><td>${r.loss_pct == null ? "–" : num(r.loss_pct, 1) + " %"}</td><td>${esc(r.edge_id)}</td>
        <td>${esc(r.state)}${r.complete === false ? ' <span class="warn">incomplete</span>' : ""}${r.legal_hold ? " · hold" : ""}</td></tr>`).join(""));
      if (!cursor && !d.recordings.length) tbody.innerHTML = `<tr><td colspan="8">No recording matches.</td></tr>`;
      more.hidden = !d.next_cursor;
      more.onclick = () => page(d.next_cursor);
    } catch (e) { document.getElementById("searcherr").textContent = e.message; }
  };
  page(null);
}

async function drawWave(canvas, url) {
  const buf = await (await fetch(url, { credentials: "same-origin" })).arrayBuffer();
  const audio = await new OfflineAudioContext(2, 1, 8000).decodeAudioData(buf);
  const w = canvas.width = canvas.clientWidth * (window.devicePixelRatio || 1);
  const hgt = canvas.height = 120 * (window.devicePixelRatio || 1);
  const g = canvas.getContext("2d");
  g.fillStyle = "#0f1726"; g.fillRect(0, 0, w, hgt);
  const colors = ["#5ec8ff", "#ffb35e"];
  const lanes = audio.numberOfChannels;
  for (let c = 0; c < lanes; c++) {
    const data = audio.getChannelData(c);
    const step = Math.max(1, Math.floor(data.length / w));
    const mid = (hgt / lanes) * (c + 0.5), amp = hgt / lanes / 2;
    g.fillStyle = colors[c % 2];
    for (let x = 0; x < w; x++) {
      let lo = 1, hi = -1;
      for (let i = x * step; i < (x + 1) * step && i < data.length; i++) { const s = data[i]; if (s < lo) lo = s; if (s > hi) hi = s; }
      if (hi >= lo) g.fillRect(x, mid - hi * amp, 1, Math.max(1, (hi - lo) * amp));
    }
  }
  canvas.dataset.drawn = "1";
}

// The SIP flow of a recording as a ladder diagram (SVG): a lifeline per endpoint, an arrow per
// message in capture order, time since the first message on the left.
function ladder(flow) {
  const cols = flow.endpoints, n = flow.messages.length;
  if (!n) return `<p class="muted">No SIP message in call.pcap.</p>`;
  const gutter = 80, colW = 230, top = 44, rowH = 34;
  const w = gutter + colW * cols.length, hgt = top + rowH * n + 12;
  const x = (ep) => gutter + colW * (cols.indexOf(ep) + 0.5);
  const t0 = flow.messages[0].at_ns;
  const COLORS = { req: "#1f5fbf", prov: "#5d6677", ok: "#1a7f46", fail: "#b3261e" };
  const kind = (m) => (m.method ? "req" : m.status < 200 ? "prov" : m.status < 300 ? "ok" : "fail");
  const head = cols.map((ep) => `<text x="${x(ep)}" y="18" text-anchor="middle" class="ep">${esc(ep)}</text>
    <line x1="${x(ep)}" y1="26" x2="${x(ep)}" y2="${hgt - 4}" class="life"/>`).join("");
  const rows = flow.messages.map((m, i) => {
    const y = top + rowH * i + 22, x1 = x(m.src), x2 = x(m.dst), k = kind(m), c = COLORS[k];
    const mid = (x1 + x2) / 2, dt = ((m.at_ns - t0) / 1e9).toFixed(3);
    const line = x1 === x2
      ? `<path d="M${x1} ${y - 8} h30 v10 h-26" fill="none" stroke="${c}" stroke-width="1.5" marker-end="url(#arr-${k})"/>`
      : `<line x1="${x1}" y1="${y}" x2="${x2 + (x2 > x1 ? -4 : 4)}" y2="${y}" stroke="${c}" stroke-width="1.5" marker-end="url(#arr-${k})"/>`;
    return `<g class="msg" data-label="${esc(m.label)}" data-cseq="${esc(m.cseq)}"><title>${esc(`${m.time} ${m.src} → ${m.dst} (${m.transport})\n${m.label} · CSeq ${m.cseq}\n${m.summary}\nCall-ID ${m.call_id}`)}</title>
      <text x="6" y="${y + 4}" class="t">+${dt} s</text>${line}
      <text x="${x1 === x2 ? x1 + 36 : mid}" y="${y - 6}" text-anchor="${x1 === x2 ? "start" : "middle"}" class="lbl" fill="${c}">${esc(m.label)}${m.sdp ? " (SDP)" : ""} <tspan class="cs">${esc(m.cseq)}</tspan></text></g>`;
  }).join("");
  return `<div class="scroll"><svg id="ladder" class="ladder" viewBox="0 0 ${w} ${hgt}" width="${w}" height="${hgt}" role="img" aria-label="SIP flow: ${n} messages between ${cols.length} endpoints">
    <defs>${Object.entries(COLORS).map(([k, c]) => `<marker id="arr-${k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="${c}"/></marker>`).join("")}</defs>
    ${head}${rows}</svg></div>
    ${flow.truncated ? `<p class="warn">Only the first ${n} messages are shown.</p>` : ""}${flow.error ? `<p class="warn">call.pcap ends early: ${esc(flow.error)}</p>` : ""}`;
}

async function showSipFlow(id) {
  const box = document.getElementById("sipflow");
  try {
    const flow = await api(`/api/v1/recordings/${encodeURIComponent(id)}/sipflow`);
    box.innerHTML = ladder(flow);
    box.dataset.messages = String(flow.messages.length);
  } catch (e) { box.innerHTML = `<p class="muted" role="status">SIP flow unavailable: ${esc(e.message)}</p>`; box.dataset.messages = "error"; }
}

async function recordingPage(id) {
  h(`<h1>Recording</h1><div id="rec">Loading…</div>`);
  let r, m;
  try { [r, m] = await Promise.all([api(`/api/v1/recordings/${encodeURIComponent(id)}`), api(`/api/v1/recordings/${encodeURIComponent(id)}/manifest`)]); }
  catch (e) { document.getElementById("rec").innerHTML = `<p class="err" role="alert">${esc(e.message)}</p>`; return; }
  const file = (n) => `/api/v1/recordings/${encodeURIComponent(id)}/files/${encodeURIComponent(n)}`;
  const wav = r.files.find((f) => f.content_type.startsWith("audio/"));
  const stored = (f) => f.locations.some((l) => !l.target.startsWith("edge:"));
  document.getElementById("rec").innerHTML = `
    <div class="card"><dl class="kv">
      <dt>Caller</dt><dd>${party(r.caller)}</dd><dt>Callee</dt><dd>${party(r.callee)}</dd>
      <dt>Start</dt><dd>${esc(new Date(r.start).toLocaleString())}</dd><dt>Duration</dt><dd>${fmtDur(r.duration_ms)}</dd>
      <dt>Call-ID</dt><dd>${esc(r.call_id)}</dd><dt>Edge</dt><dd>${esc(r.edge_id)}</dd>
      <dt>Direction</dt><dd>${esc(m.direction || "unknown")}</dd>
      <dt>End</dt><dd>${esc(m.end_reason)}${m.sip_status ? ` (SIP ${m.sip_status})` : ""}</dd>
      <dt>State</dt><dd>${esc(r.state)}${r.complete === false ? ` · <span class="warn">incomplete: ${esc((r.incomplete || []).join(", "))}</span>` : ""}${r.legal_hold ? " · legal hold" : ""}</dd>
      <dt>Recording id</dt><dd>${esc(r.recording_id)}</dd></dl></div>
    ${wav && stored(wav) ? `<div class="card"><h2>Audio</h2>
      <audio id="player" controls preload="metadata" src="${file(wav.name)}" aria-label="Call audio (stereo: caller left, callee right)"></audio>
      <canvas id="wave" class="wave" role="img" aria-label="Waveform: caller (blue, top), callee (orange, bottom)"></canvas></div>`
      : `<div class="card"><p>The audio is not in a manager target yet: fetch it back first.</p></div>`}
    <div class="card"><h2>Streams</h2><div class="scroll"><table aria-label="RTP streams"><thead><tr><th>Direction</th><th>From → to</th><th>Codec</th><th>Packets</th><th>Lost</th><th>Jitter</th><th>MOS</th></tr></thead><tbody>
      ${m.streams.map((s) => `<tr><td>${esc(s.direction)}</td><td>${esc(s.src)} → ${esc(s.dst)}</td><td>${esc(s.codec)}/${s.clock_rate}</td><td>${s.packets}</td><td>${s.lost}</td><td>${num(s.jitter_ms, 1)} ms</td><td>${num(s.mos)}</td></tr>`).join("") || `<tr><td colspan="7">No stream</td></tr>`}
    </tbody></table></div>
    <h2>DTMF</h2>${m.dtmf.length ? `<table aria-label="DTMF events"><thead><tr><th>Digit</th><th>Time</th><th>Duration</th><th>Direction</th></tr></thead><tbody>
      ${m.dtmf.map((d) => `<tr><td>${esc(d.digit)}</td><td>${esc(new Date(d.start_ns / 1e6).toLocaleTimeString())}</td><td>${d.duration_ms} ms</td><td>${esc(d.direction)}</td></tr>`).join("")}</tbody></table>` : `<p class="muted">None</p>`}
    </div>
    <div class="card"><h2>SIP flow</h2><div id="sipflow" aria-live="polite">Loading…</div></div>
    <div class="card"><h2>Files</h2><ul>
      ${r.files.map((f) => `<li>${stored(f) ? `<a href="${file(f.name)}" download>${esc(f.name)}</a>` : esc(f.name)} · ${fmtBytes(f.size)} · ${esc(f.locations.map((l) => l.target).join(", ") || "not stored")}</li>`).join("")}
      ${r.manifest_locations?.length ? `<li><a href="${file("manifest.json")}" download>manifest.json</a></li>` : ""}</ul>
      <h2>Actions</h2>
      <form class="actions" id="jobform" aria-label="Recording actions">
        <label for="jobto" class="muted">Target</label><input id="jobto" name="to" placeholder="target name" style="max-width:12rem">
        <button type="button" data-kind="move">Move</button><button type="button" data-kind="copy">Copy</button>
        <button type="button" data-kind="fetch">Fetch back</button><button type="button" data-kind="delete" class="secondary">Delete</button>
      </form><p id="jobmsg" role="alert"></p></div>`;
  for (const b of document.querySelectorAll("#jobform button")) {
    b.addEventListener("click", async () => {
      const kind = b.dataset.kind, to = document.getElementById("jobto").value.trim();
      if (kind === "delete" && !confirm("Delete every copy of this recording?")) return;
      const msg = document.getElementById("jobmsg");
      try {
        const j = await api("/api/v1/jobs", { method: "POST", body: { kind, recording_id: id, ...(to && kind !== "delete" ? { to } : {}) } });
        msg.className = ""; msg.innerHTML = `Job <a href="#/jobs">#${j.id}</a> ${esc(j.state)}.`;
      } catch (e) { msg.className = "err"; msg.textContent = e.message; }
    });
  }
  showSipFlow(id);
  const canvas = document.getElementById("wave");
  if (canvas && wav) drawWave(canvas, file(wav.name)).catch((e) => { canvas.setAttribute("aria-label", `Waveform unavailable: ${e.message}`); });
}

function jobsPage() {
  h(`<h1>Jobs</h1><div class="scroll"><table aria-label="Jobs"><thead><tr><th>#</th><th>Kind</th><th>Recording</th><th>State</th><th>Progress</th><th>Updated</th></tr></thead><tbody id="jobs"></tbody></table></div>`);
  const load = async () => {
    try {
      const d = await api("/api/v1/jobs");
      const jobs = (d.jobs || []).slice().reverse();
      document.getElementById("jobs").innerHTML = jobs.map((j) => {
        const pct = j.total_bytes ? Math.round(100 * j.progress_bytes / j.total_bytes) : (j.state === "done" ? 100 : 0);
        return `<tr data-job="${j.id}"><td>${j.id}</td><td>${esc(j.request.kind)}</td><td>${(j.recording_ids || []).map((r) => `<a href="#/recordings/${encodeURIComponent(r)}">${esc(r)}</a>`).join(" ")}</td>
          <td class="jobstate">${esc(j.state)}${j.error ? `<div class="err">${esc(j.error)}</div>` : ""}</td>
          <td><progress max="100" value="${pct}" aria-label="Job ${j.id} progress">${pct}%</progress> ${fmtBytes(j.progress_bytes)} / ${fmtBytes(j.total_bytes)}</td><td>${fmtTime(j.updated_ms)}</td></tr>`;
      }).join("") || `<tr><td colspan="6">No job yet.</td></tr>`;
    } catch (e) { document.getElementById("jobs").innerHTML = `<tr><td colspan="6" class="err">${esc(e.message)}</td></tr>`; }
  };
  load();
  const t = setInterval(load, 2000);
  stopPage = () => clearInterval(t);
}

async function alertsPage() {
  h(`<h1>Alerts</h1>
    <div class="actions"><label class="inline"><input type="checkbox" id="activeonly"> Active only</label><span id="alertcount" class="muted" aria-live="polite"></span></div>
    <div class="scroll"><table aria-label="Alerts"><thead><tr><th>Raised</th><th>Edge</th><th>Rule</th><th>Severity</th><th>Message</th><th>Cleared</th></tr></thead>
    <tbody id="alerts"><tr><td colspan="6">Loading…</td></tr></tbody></table></div>
    <p class="muted" id="alertslive"></p>`);
  const only = document.getElementById("activeonly");
  const load = async () => {
    const d = await api(`/api/v1/alerts?limit=500${only.checked ? "&active=true" : ""}`);
    const rows = (d.alerts || []).slice().sort((x, y) => y.raised_ms - x.raised_ms);
    const active = rows.filter((a) => !a.cleared_ms).length;
    document.getElementById("alertcount").textContent = `${active} active`;
    document.getElementById("alerts").innerHTML = rows.map((a) => `<tr class="${a.cleared_ms ? "cleared" : "active"}" data-rule="${esc(a.rule)}" data-edge="${esc(a.edge_id)}">
      <td>${fmtTime(a.raised_ms)}</td><td><a href="#/edges/${encodeURIComponent(a.edge_id)}">${esc(a.edge_id)}</a></td><td>${esc(a.rule)}</td>
      <td>${alertPills([{ ...a, rule: a.severity }])}</td><td>${esc(a.message)}</td><td>${a.cleared_ms ? `${fmtTime(a.cleared_ms)} ${esc(a.clear_message || "")}` : `<strong class="err">active</strong>`}</td></tr>`).join("")
      || `<tr><td colspan="6">No alert.</td></tr>`;
  };
  only.addEventListener("change", () => load().catch(() => {}));
  await load();
  // Live: the event stream says when the active alerts change; a slow poll catches the rest.
  const es = new EventSource("/api/v1/events/stream");
  es.addEventListener("alerts", (m) => {
    document.getElementById("alertslive").textContent = `Live · ${new Date(JSON.parse(m.data).at_ms).toLocaleTimeString()}`;
    load().catch(() => {});
  });
  const t = setInterval(() => load().catch(() => {}), 30000);
  stopPage = () => { es.close(); clearInterval(t); };
}

async function auditPage() {
  h(`<h1>Audit log</h1><div class="scroll"><table aria-label="Audit log"><thead><tr><th>#</th><th>Time</th><th>Who</th><th>What</th><th>Status</th></tr></thead><tbody id="audit"></tbody></table></div>`);
  const d = await api("/api/v1/audit?limit=200");
  document.getElementById("audit").innerHTML = d.entries.map((e) => `<tr><td>${e.seq}</td><td>${fmtTime(e.at_ms)}</td><td>${esc(e.actor)}</td><td>${esc(e.action)}${e.detail ? ` <span class="muted">${esc(e.detail)}</span>` : ""}</td><td>${e.status}</td></tr>`).join("");
}

// ---------- router

async function route() {
  stopPage(); stopPage = () => {};
  const hash = location.hash.slice(1) || "/fleet";
  const [path, qs] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "login") return loginPage();
  if (!me) {
    try { me = await api("/api/v1/auth/me"); showUser(); } catch { return; }
  }
  try {
    if (parts[0] === "edges" && parts[1]) return await edgePage(parts[1]);
    if (parts[0] === "recordings" && parts[1]) return await recordingPage(parts[1]);
    if (parts[0] === "recordings") return recordingsPage(new URLSearchParams(qs || ""));
    if (parts[0] === "jobs") return jobsPage();
    if (parts[0] === "config") return await configPage();
    if (parts[0] === "alerts") return await alertsPage();
    if (parts[0] === "audit") return await auditPage();
    return fleetPage();
  } catch (e) {
    if (e.status !== 401) h(`<p class="err" role="alert">${esc(e.message)}</p>`);
  }
}

window.addEventListener("hashchange", route);
route();

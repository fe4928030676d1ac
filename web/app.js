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

class ApiError extends Error { constructor(status, msg) { super(msg); this.status = status; } }

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
  if (!r.ok) throw new ApiError(r.status, data?.error || text || r.statusText);
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

function edgeRow(e) {
  const state = e.online ? `<span class="pill online">online</span>` : `<span class="pill offline">offline</span>`;
  const cfg = e.config_version_reported === e.config_version_desired ? `v${e.config_version_desired ?? "–"}`
    : `<span class="warn">v${e.config_version_reported ?? "–"} → v${e.config_version_desired ?? "–"}</span>`;
  return `<tr data-edge="${esc(e.edge_id)}"><td><a href="#/edges/${encodeURIComponent(e.edge_id)}">${esc(e.edge_id)}</a><div class="muted">${esc(e.hostname)}</div></td>
    <td class="state">${state}</td><td>${e.telemetry?.active_calls ?? "–"}</td><td>${e.telemetry?.drops ?? "–"}</td>
    <td>${pct(e.telemetry)}</td><td>${fmtBytes(e.telemetry?.backlog_bytes)}</td>
    <td><canvas class="chart" data-spark="${esc(e.edge_id)}" aria-label="Calls over 24 hours of ${esc(e.edge_id)}"></canvas></td>
    <td>${esc(e.software_version)}</td><td>${cfg}${e.config_error ? `<div class="err">${esc(e.config_error)}</div>` : ""}</td>
    <td>${fmtTime(e.last_seen_ms)}</td></tr>`;
}

function fleetPage() {
  h(`<h1>Fleet</h1>
    <div class="actions"><button id="addedge" type="button">Add an edge</button></div>
    <div id="enroll"></div>
    <div class="scroll"><table aria-label="Edges"><thead><tr><th>Edge</th><th>State</th><th>Calls now</th><th>Drops</th><th>Cache</th><th>Backlog</th><th>Calls, 24 h</th><th>Version</th><th>Config</th><th>Last seen</th></tr></thead>
    <tbody id="edges"><tr><td colspan="10">Loading…</td></tr></tbody></table></div>
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
  const render = (edges) => {
    lastEdges = edges;
    document.getElementById("edges").innerHTML = edges.length ? edges.map(edgeRow).join("")
      : `<tr><td colspan="10">No edge yet: use “Add an edge”.</td></tr>`;
    drawSparks();
  };
  api("/api/v1/edges").then((d) => { render(d.edges); loadHistory(d.edges); }).catch(() => {});
  const timer = setInterval(() => loadHistory(lastEdges), 60000);
  const es = new EventSource("/api/v1/events/stream");
  es.addEventListener("edges", (m) => {
    const d = JSON.parse(m.data);
    if (d.edges) { render(d.edges); document.getElementById("live").textContent = `Live · updated ${new Date(d.at_ms).toLocaleTimeString()}`; }
  });
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

async function edgePage(id) {
  h(`<h1>Edge ${esc(id)}</h1><div id="edge">Loading…</div>`);
  const load = async () => {
    const e = await api(`/api/v1/edges/${encodeURIComponent(id)}`);
    return e;
  };
  let e;
  try { e = await load(); } catch (err) { document.getElementById("edge").innerHTML = `<p class="err">${esc(err.message)}</p>`; return; }
  const cfg = e.desired_config?.edge ?? {};
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
    <form class="card" id="cfgform" aria-labelledby="cfgh"><h2 id="cfgh">Desired config</h2>
      <label for="cfgtext">Config (JSON; every field optional)</label>
      <textarea id="cfgtext" spellcheck="false">${esc(JSON.stringify(cfg, null, 2))}</textarea>
      <div class="actions"><button type="submit" id="cfgsave">Save and publish</button></div>
      <p id="cfgmsg" role="alert"></p></form></div>`;
  document.getElementById("cfgform").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("cfgmsg");
    let body;
    try { body = JSON.parse(document.getElementById("cfgtext").value); } catch (x) { msg.className = "err"; msg.textContent = `Not JSON: ${x.message}`; return; }
    try {
      const d = await api(`/api/v1/edges/${encodeURIComponent(id)}/config`, { method: "PUT", body });
      msg.className = ""; msg.textContent = `Published version ${d.version}.`;
    } catch (x) { msg.className = "err"; msg.textContent = x.message; }
  });
  const charts = async () => {
    try {
      const { samples } = await api(`/api/v1/edges/${encodeURIComponent(id)}/telemetry`);
      chart(document.getElementById("ch_calls"), samples, "active_calls");
      chart(document.getElementById("ch_cache"), samples, (x) => (x.cache_capacity_bytes ? Math.round(100 * x.cache_used_bytes / x.cache_capacity_bytes) : 0), "#1a7f46");
      chart(document.getElementById("ch_backlog"), samples, "backlog_bytes", "#9a6700");
    } catch { /* next minute */ }
  };
  charts();
  const timer = setInterval(charts, 60000);
  const es = new EventSource("/api/v1/events/stream");
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
  });
  stopPage = () => { es.close(); clearInterval(timer); };
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
    <p class="muted">SIP flow: open call.pcap in Wireshark (Telephony → VoIP Calls → Flow Sequence).</p></div>
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
  h(`<h1>Alerts</h1><div class="scroll"><table aria-label="Alerts"><thead><tr><th>Raised</th><th>Edge</th><th>Rule</th><th>Severity</th><th>Message</th><th>Cleared</th></tr></thead>
    <tbody id="alerts"><tr><td colspan="6">Loading…</td></tr></tbody></table></div>`);
  const load = async () => {
    const d = await api("/api/v1/alerts");
    const rows = (d.alerts || []).slice().sort((x, y) => y.raised_ms - x.raised_ms);
    document.getElementById("alerts").innerHTML = rows.map((a) => `<tr class="${a.cleared_ms ? "" : "err"}">
      <td>${fmtTime(a.raised_ms)}</td><td><a href="#/edges/${encodeURIComponent(a.edge_id)}">${esc(a.edge_id)}</a></td><td>${esc(a.rule)}</td>
      <td>${esc(a.severity)}</td><td>${esc(a.message)}</td><td>${a.cleared_ms ? `${fmtTime(a.cleared_ms)} ${esc(a.clear_message || "")}` : "active"}</td></tr>`).join("")
      || `<tr><td colspan="6">No alert.</td></tr>`;
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), 5000);
  stopPage = () => clearInterval(t);
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
    if (parts[0] === "alerts") return await alertsPage();
    if (parts[0] === "audit") return await auditPage();
    return fleetPage();
  } catch (e) {
    if (e.status !== 401) h(`<p class="err" role="alert">${esc(e.message)}</p>`);
  }
}

window.addEventListener("hashchange", route);
route();

// The ml-sandbox console page. No framework, no build step.
// Every piece of data is written with textContent (the `h` helper), never as HTML: nothing an
// isvc answers or logs can become markup or code. The Content-Security-Policy forbids inline
// script as a second line of defence.
"use strict";

const state = { token: null, overview: null, page: null, logSource: null, timers: [] };

// -- DOM helpers --------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
const uptime = (startedAt) =>
  h("span", { class: "uptime", "data-started": startedAt ?? "" }, fmtDuration(startedAt ? Date.now() / 1000 - startedAt : null));
function tickUptimes() {
  for (const el of document.querySelectorAll(".uptime[data-started]")) {
    const t = parseFloat(el.dataset.started);
    if (!Number.isNaN(t)) el.textContent = fmtDuration(Date.now() / 1000 - t);
  }
}
const badge = (s) => h("span", { class: `badge ${s}`, "data-state": s }, s);

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.floor(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

// -- API ----------------------------------------------------------------------------------------
async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Console-Token": state.token },
    body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  let data;
  try { data = await r.json(); } catch { data = { error: `HTTP ${r.status}` }; }
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

// -- header and overview stream -----------------------------------------------------------------
function renderHeader(ov) {
  $("gateway").textContent = ov.gateway || "not running";
  $("mediawiki").textContent = ov.mediawiki
    .map((m) => (m.target === "-" ? m.mode : `${m.mode}${m.directory ? " " + m.directory : ""} (${m.target})`))
    .join(", ");
}

function connectEvents() {
  const es = new EventSource("/api/events");
  es.addEventListener("overview", (ev) => {
    const ov = JSON.parse(ev.data);
    if (ov.error) return;
    delete ov.time;
    if (state.overview && JSON.stringify(ov) === JSON.stringify(state.overview)) return;
    state.overview = ov;
    renderHeader(ov);
    if (state.page && state.page.kind === "overview") renderOverview();
    if (state.page && state.page.kind === "isvc") renderIsvcStatus();
  });
  es.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; };
  es.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "live off"; };
}

// -- actions ------------------------------------------------------------------------------------
const ACTION_TEXT = {
  start: ["Start", "starts it with `up`, with the gateway port and MediaWiki mode on record"],
  restart: ["Restart", "runs `down`, then `up` (the gateway port and MediaWiki mode on record)"],
  stop: ["Stop", "runs `down` for it: its components stop, its logs stay"],
  "rebuild-model": ["Rebuild the model of", "runs `models build --force`, then restarts it so it loads the new file"],
};

function confirmAction(action, isvc) {
  return new Promise((resolve) => {
    const [verb, detail] = ACTION_TEXT[action];
    $("confirm-text").textContent = `${verb} ${isvc}?`;
    $("confirm-detail").textContent = `This ${detail}.`;
    $("confirm-ok").textContent = verb.split(" ")[0];
    const dlg = $("confirm");
    dlg.returnValue = "";
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.showModal();
  });
}

async function runAction(action, isvc) {
  if (!(await confirmAction(action, isvc))) return;
  let job;
  try {
    job = await api(`/api/isvcs/${encodeURIComponent(isvc)}/actions`, { action });
  } catch (e) {
    showActivity(`${action} ${isvc}`, "failed", e.message);
    return;
  }
  showActivity(`${action} ${isvc}`, "running", job.commands.join("\n"));
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    try { job = await api(`/api/jobs/${job.id}`); } catch (e) { showActivity(`${action} ${isvc}`, "failed", e.message); return; }
    showActivity(`${action} ${isvc}`, job.done ? (job.returncode === 0 ? "ok" : "failed") : "running", job.output);
    if (job.done) return;
  }
}

function showActivity(title, st, text) {
  $("activity").hidden = false;
  $("activity-title").textContent = title;
  const b = $("activity-state");
  b.textContent = st === "ok" ? "done ✓" : st === "failed" ? "failed ✗" : "running…";
  b.className = `badge ${st}`;
  b.dataset.state = st;
  const out = $("activity-output");
  out.textContent = text;
  out.scrollTop = out.scrollHeight;
}

function actionButtons(isvc, running) {
  const b = (action, label, cls) =>
    h("button", { type: "button", class: cls, "data-action": action, onclick: () => runAction(action, isvc) }, label);
  return h("div", { class: "actions" },
    running ? [b("restart", "Restart", "ghost"), b("stop", "Stop", "danger")] : [b("start", "Start", "ghost")],
    b("rebuild-model", "Rebuild model", "ghost"));
}

// -- overview -----------------------------------------------------------------------------------
function componentTable(components) {
  if (!components.length) return h("span", { class: "muted" }, "not running");
  return h("table", { class: "components" },
    h("tr", {}, ["component", "state", "address", "pid / container", "uptime", "restarts"].map((t) => h("th", {}, t))),
    components.map((c) => h("tr", { "data-component": c.component },
      h("td", {}, c.component),
      h("td", {}, badge(c.state)),
      h("td", { class: "mono" }, c.address),
      h("td", { class: "mono" }, c.container || c.pid || "–"),
      h("td", { class: "num" }, uptime(c.started_at)),
      h("td", { class: "num" }, c.restarts ?? "–"))));
}

function renderOverview() {
  const ov = state.overview;
  const main = $("main");
  main.replaceChildren();
  main.append(h("h1", {}, "Sandbox"));
  if (!ov) { main.append(h("p", { class: "muted" }, "loading…")); return; }
  const rows = ov.isvcs.map((i) => h("tr", { "data-isvc": i.name, class: "isvc-row" },
    h("td", {}, h("a", { href: `#/isvc/${encodeURIComponent(i.name)}` }, i.name)),
    h("td", {}, i.namespace),
    h("td", { class: "mono" }, i.host),
    h("td", {}, i.target || "–"),
    h("td", { class: "isvc-state" }, badge(i.state)),
    h("td", {}, componentTable(i.components)),
    h("td", {}, actionButtons(i.name, i.state !== "stopped"))));
  main.append(h("section", { class: "panel" },
    h("h2", {}, "Inference services"),
    h("table", { id: "isvcs" },
      h("tr", {}, ["isvc", "namespace", "Host", "target", "state", "components", ""].map((t) => h("th", {}, t))),
      rows)));
  const plat = ov.platform.map((p) => h("tr", { "data-component": p.component },
    h("td", {}, p.component), h("td", {}, p.target), h("td", {}, badge(p.state)),
    h("td", { class: "mono" }, p.address), h("td", { class: "mono" }, p.pid || "–"),
    h("td", { class: "num" }, uptime(p.started_at)), h("td", { class: "muted" }, p.detail || "")));
  main.append(h("section", { class: "panel" },
    h("h2", {}, "Platform"),
    plat.length
      ? h("table", {}, h("tr", {}, ["process", "target", "state", "address", "pid", "uptime", ""].map((t) => h("th", {}, t))), plat)
      : h("p", { class: "muted" }, `nothing is running: start an isvc with \`${ov.cli} up <isvc> --console\`, or with Start above`)));
}

// -- one isvc -----------------------------------------------------------------------------------
function shq(s) { return `'${s.replace(/'/g, `'\\''`)}'`; }

function curlCommands(info, body) {
  const base = info.gateway || "http://127.0.0.1:8080";
  return {
    internal: `curl -s ${base}${info.predict_path} \\\n  -H ${shq("Host: " + info.host)} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shq(body)}`,
    public: `curl -s ${base}${info.public_path} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shq(body)}`,
  };
}

function copyRow(label, text, id) {
  const pre = h("pre", { id }, text);
  return h("div", {},
    h("div", { class: "muted" }, label),
    h("div", { class: "copyrow" }, pre,
      h("button", { type: "button", class: "ghost", onclick: () => navigator.clipboard && navigator.clipboard.writeText(pre.textContent) }, "Copy")));
}

function prettyJson(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

function resultView(res) {
  return h("div", { class: "result" },
    h("div", {}, h("span", { class: res.ok ? "pass" : "fail" }, res.ok ? "✓" : "✗"),
      ` HTTP ${res.status} in ${res.ms} ms`),
    res.checks.length ? h("ul", { class: "checks" }, res.checks.map((c) => h("li", { "data-ok": c.ok },
      h("span", { class: c.ok ? "pass" : "fail" }, c.ok ? "✓ " : "✗ "), c.label, c.why ? ` — ${c.why}` : ""))) : null,
    h("details", {}, h("summary", {}, "request"),
      h("pre", {}, `POST ${res.request.url}\nHost: ${res.request.host}\n\n${prettyJson(res.request.body)}`)),
    h("details", { open: true }, h("summary", {}, "answer"), h("pre", { class: "answer" }, prettyJson(res.answer))));
}

async function runSample(info, sample, cell) {
  cell.replaceChildren(h("span", { class: "muted" }, "running…"));
  try {
    const res = await api(`/api/isvcs/${encodeURIComponent(info.name)}/predict`, { sample: sample.name });
    cell.replaceChildren(resultView(res));
    cell.dataset.result = res.ok ? "pass" : "fail";
  } catch (e) {
    cell.replaceChildren(h("span", { class: "error" }, e.message));
    cell.dataset.result = "error";
  }
}

function samplesPanel(info) {
  const cells = {};
  const rows = info.samples.map((s) => {
    const cell = h("td", { class: "sample-result" });
    cells[s.name] = cell;
    return h("tr", { "data-sample": s.name },
      h("td", {}, h("strong", {}, s.name), h("div", { class: "muted" }, s.description)),
      h("td", {}, h("pre", {}, s.body), h("div", { class: "muted" }, `expects ${s.expect_status}`, s.checks.length ? `; ${s.checks.join("; ")}` : "")),
      h("td", {}, h("button", { type: "button", class: "ghost run-sample", onclick: () => runSample(info, s, cell) }, "Run")),
      cell);
  });
  const runAll = async (ev) => {
    const button = ev.currentTarget;
    button.disabled = true;
    try { for (const s of info.samples) await runSample(info, s, cells[s.name]); }
    finally { button.disabled = false; }
  };
  return h("section", { class: "panel", id: "samples" },
    h("div", { class: "toolbar" }, h("h2", {}, `Samples (${info.samples.length})`),
      h("button", { type: "button", id: "run-all", onclick: runAll }, "Run all")),
    h("table", {}, h("tr", {}, ["sample", "request", "", "result"].map((t) => h("th", {}, t))), rows));
}

function editorPanel(info) {
  const first = info.samples[0] ? info.samples[0].body : "{}";
  const ta = h("textarea", { id: "editor-body", spellcheck: "false" }, first);
  const curls = h("div", {});
  const out = h("div", { id: "editor-result" });
  const refresh = () => {
    const c = curlCommands(info, ta.value);
    curls.replaceChildren(
      copyRow("Lift Wing internal (Host header), as services in the cluster call it", c.internal, "curl-internal"),
      copyRow("api.wikimedia.org form (the gateway rewrites it)", c.public, "curl-public"));
  };
  ta.addEventListener("input", refresh);
  refresh();
  const send = async () => {
    out.replaceChildren(h("span", { class: "muted" }, "sending…"));
    try { out.replaceChildren(resultView(await api(`/api/isvcs/${encodeURIComponent(info.name)}/predict`, { body: ta.value }))); }
    catch (e) { out.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  const pick = h("select", { onchange: (e) => { const s = info.samples.find((x) => x.name === e.target.value); if (s) { ta.value = s.body; refresh(); } } },
    info.samples.map((s) => h("option", { value: s.name }, s.name)));
  return h("section", { class: "panel", id: "editor" },
    h("div", { class: "toolbar" }, h("h2", {}, "Request"), h("span", { class: "muted" }, "start from"), pick,
      h("button", { type: "button", id: "editor-send", onclick: send }, "Send")),
    ta, curls, out);
}

const PLATFORM_LOGS = ["gateway", "mediawiki"];

function logsPanel(info) {
  const view = h("pre", { class: "logview mono", id: "logview" });
  const filter = h("input", { type: "search", id: "log-filter", placeholder: "filter the lines shown (live)" });
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  const comp = h("select", { id: "log-component" },
    info.components.map((c) => h("option", { value: c }, c)),
    ["gateway", "mediawiki"].map((c) => h("option", { value: c }, c)));
  const status = h("span", { class: "muted", id: "log-status" });
  let lines = [];
  const MAX = 5000;
  const matches = (l) => !filter.value || l.toLowerCase().includes(filter.value.toLowerCase());
  const draw = () => {
    view.replaceChildren(...lines.filter(matches).map((l) => h("div", { class: "logline" }, l)));
    if (follow.checked) view.scrollTop = view.scrollHeight;
  };
  const open = () => {
    if (state.logSource) state.logSource.close();
    lines = [];
    draw();
    const c = comp.value;
    const url = PLATFORM_LOGS.includes(c) ? `/api/logs/${c}/stream` : `/api/logs/${encodeURIComponent(info.name)}/stream?component=${encodeURIComponent(c)}`;
    const es = new EventSource(url);
    state.logSource = es;
    status.textContent = "following…";
    es.addEventListener("line", (ev) => {
      const line = JSON.parse(ev.data);
      lines.push(line);
      if (lines.length > MAX) lines.splice(0, lines.length - MAX);
      if (matches(line)) {
        view.append(h("div", { class: "logline" }, line));
        if (follow.checked) view.scrollTop = view.scrollHeight;
      }
    });
    es.addEventListener("end", () => { status.textContent = "the log command ended"; es.close(); });
  };
  const searchAll = async () => {
    if (!filter.value) return;
    const c = comp.value;
    const base = PLATFORM_LOGS.includes(c) ? `/api/logs/${c}/search?` : `/api/logs/${encodeURIComponent(info.name)}/search?component=${encodeURIComponent(c)}&`;
    status.textContent = "searching every rotated file…";
    try {
      const res = await api(`${base}q=${encodeURIComponent(filter.value)}`);
      if (follow.checked) follow.checked = false;
      view.replaceChildren(...res.lines.map((l) => h("div", { class: "logline hit" }, l)));
      status.textContent = `${res.count} line(s) hold “${res.query}” in all files (live view paused; tick follow to resume)`;
    } catch (e) { status.textContent = e.message; }
  };
  filter.addEventListener("input", draw);
  follow.addEventListener("change", () => { if (follow.checked) draw(); });
  comp.addEventListener("change", open);
  setTimeout(open, 0);
  return h("section", { class: "panel", id: "logs" },
    h("div", { class: "toolbar" }, h("h2", {}, "Logs"), comp, filter,
      h("button", { type: "button", class: "ghost", id: "log-search", onclick: searchAll }, "Search all files"),
      h("label", {}, follow, " follow"), status),
    view);
}

function latencyChart(reqs) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 140");
  svg.setAttribute("preserveAspectRatio", "none");
  const last = reqs.slice(-100);
  const max = Math.max(1, ...last.map((r) => r.ms));
  const w = 600 / Math.max(last.length, 1);
  last.forEach((r, i) => {
    const bh = Math.max(1, (r.ms / max) * 130);
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", String(i * w + 0.5));
    rect.setAttribute("y", String(140 - bh));
    rect.setAttribute("width", String(Math.max(1, w - 1)));
    rect.setAttribute("height", String(bh));
    rect.setAttribute("class", r.status >= 400 ? "bar err" : "bar");
    const t = document.createElementNS(NS, "title");
    t.textContent = `${r.time} ${r.status} ${r.ms} ms`;
    rect.append(t);
    svg.append(rect);
  });
  return svg;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function requestsPanel(info) {
  const body = h("div", { id: "requests-body" }, h("span", { class: "muted" }, "loading…"));
  const load = async () => {
    let data;
    try { data = await api(`/api/isvcs/${encodeURIComponent(info.name)}/requests`); }
    catch (e) { body.replaceChildren(h("span", { class: "error" }, e.message)); return; }
    const reqs = data.requests;
    if (!reqs.length) { body.replaceChildren(h("p", { class: "muted" }, "no requests in the gateway's access log yet")); return; }
    const ms = reqs.map((r) => r.ms).sort((a, b) => a - b);
    const errors = reqs.filter((r) => r.status >= 400).length;
    body.replaceChildren(
      h("p", { class: "muted" }, `${reqs.length} requests · p50 ${percentile(ms, 50)} ms · p95 ${percentile(ms, 95)} ms · max ${ms[ms.length - 1]} ms · ${errors} answered 4xx/5xx (red) · the chart shows the last 100`),
      latencyChart(reqs),
      h("table", { id: "requests" },
        h("tr", {}, ["time", "request", "status", "latency"].map((t) => h("th", {}, t))),
        reqs.slice(-50).reverse().map((r) => h("tr", { class: "request-row" },
          h("td", { class: "mono" }, r.time), h("td", { class: "mono" }, `${r.method} ${r.path}`),
          h("td", {}, h("span", { class: r.status < 400 ? "pass" : "fail" }, r.status)),
          h("td", { class: "num" }, `${r.ms} ms`)))));
  };
  load();
  state.timers.push(setInterval(load, 3000));
  return h("section", { class: "panel", id: "recent" }, h("h2", {}, "Recent requests (gateway access log)"), body);
}

function factsPanel(info) {
  const f = info.facts;
  const comps = Object.entries(f.components || {}).filter(([, c]) => c);
  const pairs = [
    ["namespace", info.namespace], ["Host", info.host], ["predict", `POST ${info.predict_path}`],
    ["public path", `POST ${info.public_path}`],
    ...comps.map(([n, c]) => [n, `${c.entrypoint}  (requirements: ${(c.requirements || []).join(", ") || "–"})`]),
    ["model", `${f.model.file} ← ${f.model.storage_uri}`],
    ["autoscaling", `${f.autoscaling.min_replicas}–${f.autoscaling.max_replicas} replicas, ${f.autoscaling.metric} ${f.autoscaling.target}`],
  ];
  return h("section", { class: "panel", id: "facts" },
    h("h2", {}, "service.yaml"),
    h("p", {}, info.description),
    h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("details", {}, h("summary", {}, info.service_yaml_path), h("pre", {}, info.service_yaml)));
}

function renderIsvcStatus() {
  const page = state.page;
  const box = $("isvc-status");
  if (!page || !box || !state.overview) return;
  const i = state.overview.isvcs.find((x) => x.name === page.name);
  if (!i) return;
  box.replaceChildren(
    h("div", { class: "toolbar" }, h("span", { id: "isvc-state" }, badge(i.state)),
      h("span", { class: "muted" }, i.target ? `on ${i.target}` : "not running"),
      actionButtons(i.name, i.state !== "stopped")),
    componentTable(i.components));
}

async function renderIsvc(name) {
  const main = $("main");
  main.replaceChildren(h("p", { class: "muted" }, "loading…"));
  let info;
  try { info = await api(`/api/isvcs/${encodeURIComponent(name)}`); }
  catch (e) { main.replaceChildren(h("p", { class: "error" }, e.message)); return; }
  if (!state.page || state.page.name !== name) return;
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← all isvcs")),
    h("h1", {}, info.name, h("span", { class: "muted mono" }, info.host)),
    h("section", { class: "panel", id: "isvc-status" }),
    h("div", { class: "grid2" }, factsPanel(info), editorPanel(info)),
    samplesPanel(info),
    logsPanel(info),
    requestsPanel(info));
  renderIsvcStatus();
}

// -- routing ------------------------------------------------------------------------------------
function route() {
  if (state.logSource) { state.logSource.close(); state.logSource = null; }
  state.timers.forEach(clearInterval);
  state.timers = [];
  const m = location.hash.match(/^#\/isvc\/([^/]+)$/);
  if (m) {
    state.page = { kind: "isvc", name: decodeURIComponent(m[1]) };
    renderIsvc(state.page.name);
  } else {
    state.page = { kind: "overview" };
    renderOverview();
  }
}

async function start() {
  $("activity-close").addEventListener("click", () => { $("activity").hidden = true; });
  try {
    state.token = (await api("/api/session")).token;
  } catch (e) {
    $("main").replaceChildren(h("p", { class: "error" }, `cannot reach the console: ${e.message}`));
    return;
  }
  try {
    state.overview = await api("/api/overview");
    delete state.overview.time;
    renderHeader(state.overview);
  } catch (e) { /* the event stream will bring it */ }
  window.addEventListener("hashchange", route);
  setInterval(tickUptimes, 1000);
  route();
  connectEvents();
}

start();

// Oxeye dashboard: the little JavaScript the pages need (metrics graph and
// completion, live log tail). Pages work without it except for those parts.
"use strict";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };

// ---- metrics explorer ----
async function metricsPage() {
  const form = document.getElementById("metrics-form");
  if (!form) return;
  const input = document.getElementById("promql");
  const list = document.getElementById("metric-names");
  const status = document.getElementById("metrics-status");
  let names = [];
  try {
    const r = await fetch("/api/v1/label/__name__/values");
    names = (await r.json()).data || [];
  } catch (e) { /* completion is optional */ }
  const labelCache = {};
  async function complete() {
    const text = input.value;
    const caret = input.selectionStart || text.length;
    const before = text.slice(0, caret);
    let options = [];
    const valueMatch = before.match(/([a-zA-Z_][a-zA-Z0-9_]*)\s*=~?\s*"([^"]*)$/);
    const labelMatch = before.match(/[{,]\s*([a-zA-Z_]*)$/);
    if (valueMatch) {
      const name = valueMatch[1];
      if (!labelCache[name]) {
        const r = await fetch("/api/v1/label/" + encodeURIComponent(name) + "/values?limit=200");
        labelCache[name] = (await r.json()).data || [];
      }
      const head = before.slice(0, before.length - valueMatch[2].length);
      options = labelCache[name].map(v => head + v + '"' + text.slice(caret));
    } else if (labelMatch) {
      if (!labelCache.__labels) {
        const r = await fetch("/api/v1/labels");
        labelCache.__labels = (await r.json()).data || [];
      }
      const head = before.slice(0, before.length - labelMatch[1].length);
      options = labelCache.__labels.filter(l => l.startsWith(labelMatch[1])).map(l => head + l + '="');
    } else {
      const word = before.match(/[a-zA-Z_:][a-zA-Z0-9_:]*$/);
      const head = word ? before.slice(0, before.length - word[0].length) : before;
      options = names.filter(n => !word || n.startsWith(word[0])).map(n => head + n + text.slice(caret));
    }
    list.replaceChildren(...options.slice(0, 50).map(o => el("option", { value: o })));
  }
  input.addEventListener("input", complete);
  complete();
  const params = new URLSearchParams(location.search);
  const query = params.get("query");
  if (!query) { status.textContent = "Type a PromQL expression and press Run."; return; }
  const range = RANGES[params.get("range")] || 3600;
  const end = Math.floor(Date.now() / 1000);
  const start = end - range;
  const step = Math.max(1, Math.ceil(range / 600));
  status.textContent = "Running…";
  const url = `/api/v1/query_range?query=${encodeURIComponent(query)}&start=${start}&end=${end}&step=${step}`;
  const resp = await fetch(url);
  const body = await resp.json();
  if (body.status !== "success") { status.textContent = "Error: " + body.error; status.className = "status error"; return; }
  const series = body.data.result.slice(0, 50);
  const shown = body.data.result.length > 50 ? ` (showing 50 of ${body.data.result.length})` : "";
  status.textContent = `${body.data.result.length} series${shown}, step ${step}s.`;
  const tbody = document.querySelector("#metrics-table tbody");
  tbody.replaceChildren();
  const label = m => {
    const name = m.__name__ || "";
    const rest = Object.entries(m).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`).join(", ");
    return rest ? `${name}{${rest}}` : (name || "{}");
  };
  const times = [];
  for (let t = start; t <= end; t += step) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times];
  for (const s of series) {
    const col = new Array(times.length).fill(null);
    for (const [t, v] of s.values) { const i = index.get(Math.round(t)); if (i !== undefined) col[i] = parseFloat(v); }
    data.push(col);
    const last = s.values.length ? s.values[s.values.length - 1][1] : "";
    const row = el("tr");
    row.append(el("td", { class: "mono" }, label(s.metric)), el("td", { class: "num" }, last));
    tbody.append(row);
  }
  if (!series.length) { status.textContent = "No data for this query in the range."; return; }
  const palette = ["#2f6fdf", "#d9480f", "#2f855a", "#9c36b5", "#c9372c", "#0c8599", "#e67700", "#5c7cfa"];
  const graph = document.getElementById("graph");
  const opts = {
    width: graph.clientWidth || 900, height: 320,
    series: [{}].concat(series.map((s, i) => ({ label: label(s.metric), stroke: palette[i % palette.length], width: 1.5, spanGaps: false, points: { show: true, size: 4 } }))),
    axes: [{}, { size: 60 }],
    legend: { show: true, live: true },
  };
  graph.replaceChildren();
  new uPlot(opts, data, graph);
}

// ---- live log tail ----
function logsPage() {
  const toggle = document.getElementById("live-tail");
  if (!toggle) return;
  let source = null;
  const rows = document.getElementById("tail-rows");
  toggle.addEventListener("change", () => {
    if (source) { source.close(); source = null; }
    if (!toggle.checked) return;
    const query = document.getElementById("logs-query").value || "*";
    source = new EventSource("/api/v1/logs/tail?query=" + encodeURIComponent(query));
    source.addEventListener("log", ev => {
      const r = JSON.parse(ev.data);
      const src = r.source || {};
      const msg = typeof src.message === "string" ? src.message : (typeof src.body === "string" ? src.body : JSON.stringify(src));
      const sev = String(src.severity_text || (src.log && src.log.level) || src.level || "");
      const d = el("details", { class: "log tail sev-" + sevClass(sev) });
      const s = el("summary");
      s.append(el("span", { class: "ts" }, r.timestamp), " ", el("span", { class: "sev" }, sev), " ",
        el("span", { class: "idx" }, r.index), " ", el("span", { class: "msg" }, msg));
      const pre = el("pre", { class: "mono" }, JSON.stringify(src, null, 2));
      d.append(s, pre);
      rows.prepend(d);
      while (rows.childElementCount > 200) rows.lastElementChild.remove();
    });
  });
}

function sevClass(s) {
  s = s.toLowerCase();
  if (s.startsWith("err") || s.startsWith("fatal") || s.startsWith("crit")) return "error";
  if (s.startsWith("warn")) return "warn";
  if (s.startsWith("debug") || s.startsWith("trace")) return "debug";
  return "info";
}

document.addEventListener("DOMContentLoaded", () => { metricsPage(); logsPage(); recommendationsPage(); cacheCurve(); sqlPage(); });

// ---- recommendations: usage with request/limit lines, HPA replay ----
async function recommendationsPage() {
  const box = document.getElementById("rec-charts");
  if (!box) return;
  const resp = await fetch(box.dataset.url);
  const body = await resp.json();
  if (!resp.ok) { box.replaceChildren(el("p", { class: "status error" }, "Error: " + body.error)); return; }
  box.replaceChildren();
  const palette = { usage: "#2f6fdf", now: "#868e96", request: "#2f855a", limit: "#d9480f", train: "#9c36b5" };
  const flat = (v, n) => new Array(n).fill(typeof v === "number" ? v : null);
  const n = body.times.length;
  function chart(title, unit, lines) {
    const holder = el("div", { class: "graph rec-chart" });
    box.append(el("h3", {}, title), holder);
    const opts = {
      width: holder.clientWidth || 900, height: 220,
      series: [{}].concat(lines.map(l => ({ label: l.label, stroke: l.color, width: l.width || 1.5, dash: l.dash, spanGaps: true, points: { show: false } }))),
      axes: [{}, { size: 70, values: (u, vals) => vals.map(v => unit(v)) }],
      legend: { show: true },
    };
    new uPlot(opts, [body.times].concat(lines.map(l => l.data)), holder);
  }
  const cores = v => v == null ? "" : (v < 1 ? Math.round(v * 1000) + "m" : v.toFixed(2));
  const mib = v => v == null ? "" : Math.round(v / 1048576) + "Mi";
  for (const [name, c] of Object.entries(body.containers)) {
    chart(`${name}: CPU (max over pods)`, cores, [
      { label: "usage", color: palette.usage, data: c.cpu },
      { label: "request today", color: palette.now, dash: [6, 4], data: flat(c.current.requests.cpu, n) },
      { label: "recommended request", color: palette.request, width: 2, data: flat(c.recommended.requests.cpu, n) },
      { label: "recommended limit", color: palette.limit, data: flat(c.recommended.limits.cpu, n) },
    ]);
    chart(`${name}: memory working set (max over pods)`, mib, [
      { label: "usage", color: palette.usage, data: c.memory },
      { label: "request today", color: palette.now, dash: [6, 4], data: flat(c.current.requests.memory, n) },
      { label: "limit today", color: palette.now, data: flat(c.current.limits.memory, n) },
      { label: "recommended limit", color: palette.limit, width: 2, data: flat(c.recommended.limits.memory, n) },
    ]);
    box.append(el("p", { class: "hint" }, `Backtest (trained until ${new Date(body.train_end * 1000).toISOString()}): ${c.backtest.verdict}`));
  }
  const lines = [{ label: "CPU demand (cores, all pods)", color: palette.usage, data: body.demand }];
  if (body.current_hpa_replicas) lines.push({ label: "replicas: today's HPA replayed", color: palette.now, data: body.current_hpa_replicas });
  if (body.advised_hpa_replicas) lines.push({ label: "replicas: advised HPA replayed", color: palette.request, width: 2, data: body.advised_hpa_replicas });
  chart("Demand and HPA replay", v => v == null ? "" : v.toFixed(1), lines);
  box.append(el("p", { class: "hint", id: "hpa-reason" }, body.hpa.reason || ""));
}

// ---- database advice: the LRU hit-ratio curve of the top cache candidate ----
function cacheCurve() {
  const box = document.getElementById("cache-curve");
  if (!box) return;
  const points = JSON.parse(box.dataset.curve).filter(p => p[1] !== null);
  if (!points.length) return;
  const opts = {
    width: box.clientWidth || 900, height: 220,
    scales: { x: { distr: 3 }, y: { range: [0, 1] } },
    series: [{ label: "entries" }, { label: "hit ratio", stroke: "#2f855a", width: 2, points: { show: true, size: 6 } }],
    axes: [{}, { size: 60, values: (u, vals) => vals.map(v => v == null ? "" : Math.round(v * 100) + "%") }],
  };
  new uPlot(opts, [points.map(p => p[0]), points.map(p => p[1])], box);
}

// ---- SQL: a result table, and a chart when there is a time column ----
async function sqlPage() {
  const form = document.getElementById("sql-form");
  if (!form) return;
  const input = document.getElementById("sql-query");
  input.addEventListener("keydown", e => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit(); });
  const query = input.value.trim();
  const status = document.getElementById("sql-status");
  if (!query) { status.textContent = "Type a query and press Run."; return; }
  status.textContent = "Running…";
  const started = performance.now();
  const resp = await fetch("/api/v1/sql", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ query }) });
  const body = await resp.json();
  if (!resp.ok) { status.textContent = "Error: " + body.error; status.className = "status error"; return; }
  const ms = Math.round(performance.now() - started);
  status.textContent = `${body.rows.length} row${body.rows.length === 1 ? "" : "s"} in ${ms} ms.`;
  const head = document.querySelector("#sql-table thead");
  const tbody = document.querySelector("#sql-table tbody");
  head.replaceChildren(el("tr"));
  for (const c of body.columns) head.firstChild.append(el("th", { title: c.type }, c.name));
  tbody.replaceChildren();
  const text = v => v === null ? "" : (typeof v === "object" ? JSON.stringify(v) : String(v));
  for (const r of body.rows.slice(0, 1000)) {
    const row = el("tr");
    body.columns.forEach((c, i) => row.append(el("td", { class: typeof r[i] === "number" ? "num" : "mono" }, text(r[i]))));
    tbody.append(row);
  }
  // A chart: the first timestamp column against every numeric column.
  const time = body.columns.findIndex(c => c.type.startsWith("timestamp"));
  const numeric = body.columns.map((c, i) => i).filter(i => ["bigint", "integer", "smallint", "real", "double precision", "numeric"].includes(body.columns[i].type));
  const graph = document.getElementById("sql-graph");
  graph.replaceChildren();
  if (time < 0 || !numeric.length || !body.rows.length) return;
  const rows = body.rows.filter(r => r[time] !== null).map(r => [Date.parse(r[time]) / 1000, r]).sort((a, b) => a[0] - b[0]);
  const data = [rows.map(r => r[0])].concat(numeric.map(i => rows.map(r => typeof r[1][i] === "number" ? r[1][i] : null)));
  const palette = ["#2f6fdf", "#d9480f", "#2f855a", "#9c36b5", "#c9372c", "#0c8599"];
  new uPlot({
    width: graph.clientWidth || 900, height: 300,
    series: [{}].concat(numeric.map((i, k) => ({ label: body.columns[i].name, stroke: palette[k % palette.length], width: 1.5, points: { show: true, size: 4 } }))),
    axes: [{}, { size: 60 }],
  }, data, graph);
}

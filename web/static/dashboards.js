// Oxeye dashboards: Grafana's dashboard JSON drawn in the browser.
//
// Every query goes to the API Grafana's data sources call (the Prometheus
// HTTP API, Elasticsearch's _msearch, Jaeger's /api/traces), with the step,
// interval macros, variable formats and legend rules of Grafana's Prometheus
// data source, so a panel shows what Grafana would show. What is not
// supported is said on the panel, with the reason; a panel is never blank.
"use strict";

const OX = (() => {
  // ---------------------------------------------------------------- helpers
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== undefined && c !== null) e.append(c);
    return e;
  }
  const stats = { requests: 0, failed: 0 };
  // At most this many data requests in flight (a browser opens six per host).
  const MAX_IN_FLIGHT = 6;
  let inFlight = 0;
  const waiting = [];
  async function slot() {
    if (inFlight < MAX_IN_FLIGHT) { inFlight++; return; }
    await new Promise(r => waiting.push(r));
    inFlight++;
  }
  function release() { inFlight--; const next = waiting.shift(); if (next) next(); }
  async function api(url, init) {
    await slot();
    stats.requests++;
    try {
      const resp = await fetch(url, init);
      const text = await resp.text();
      let body;
      try { body = JSON.parse(text); } catch (e) { body = null; }
      if (!resp.ok || (body && body.status === "error")) {
        stats.failed++;
        // Prometheus and Oxeye: {"error": "…"}; Elasticsearch: {"error": {"reason": …}}.
        const e = body && body.error;
        const reason = typeof e === "string" ? e : (e && e.reason) || (body && body.message) || text.slice(0, 300);
        throw new Error(`${resp.status} ${reason}`);
      }
      if (body === null) throw new Error(`not JSON: ${text.slice(0, 200)}`);
      return body;
    } finally { release(); }
  }
  const form = params => {
    const p = new URLSearchParams();
    for (const [k, v] of params) p.append(k, v);
    return p;
  };
  const post = (url, params) => api(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form(params) });

  // ---------------------------------------------------------------- time
  const UNIT_MS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, M: 2592000000, y: 31536000000 };
  // Grafana's datemath: now[±N unit]…[/unit], epoch ms, ISO dates.
  function parseTime(text, roundUp, now) {
    text = String(text || "").trim();
    if (/^\d+$/.test(text) && text.length !== 8) return Number(text);
    if (/^\d{8}$/.test(text)) return Date.UTC(+text.slice(0, 4), +text.slice(4, 6) - 1, +text.slice(6, 8));
    if (!text.startsWith("now")) {
      const t = Date.parse(text);
      if (isNaN(t)) throw new Error(`cannot read the time ${JSON.stringify(text)}`);
      return t;
    }
    let t = new Date(now);
    let rest = text.slice(3);
    while (rest.length) {
      let m = rest.match(/^([+-])(\d*)([smhdwMyQ])/);
      if (m) {
        const n = (m[2] === "" ? 1 : parseInt(m[2], 10)) * (m[1] === "-" ? -1 : 1);
        t = addUnit(t, m[3], n);
        rest = rest.slice(m[0].length);
        continue;
      }
      m = rest.match(/^\/([smhdwMyQ])/);
      if (m) {
        t = roundTo(t, m[1], roundUp);
        rest = rest.slice(m[0].length);
        continue;
      }
      throw new Error(`cannot read the time ${JSON.stringify(text)}`);
    }
    return t.getTime();
  }
  function addUnit(t, unit, n) {
    const d = new Date(t);
    switch (unit) {
      case "y": d.setFullYear(d.getFullYear() + n); break;
      case "Q": d.setMonth(d.getMonth() + 3 * n); break;
      case "M": d.setMonth(d.getMonth() + n); break;
      default: return new Date(d.getTime() + n * UNIT_MS[unit]);
    }
    return d;
  }
  function roundTo(t, unit, up) {
    const d = new Date(t);
    const start = new Date(d);
    switch (unit) {
      case "y": start.setMonth(0, 1); start.setHours(0, 0, 0, 0); break;
      case "Q": start.setMonth(Math.floor(d.getMonth() / 3) * 3, 1); start.setHours(0, 0, 0, 0); break;
      case "M": start.setDate(1); start.setHours(0, 0, 0, 0); break;
      case "w": start.setDate(d.getDate() - d.getDay()); start.setHours(0, 0, 0, 0); break;
      case "d": start.setHours(0, 0, 0, 0); break;
      case "h": start.setMinutes(0, 0, 0); break;
      case "m": start.setSeconds(0, 0); break;
      case "s": start.setMilliseconds(0); break;
    }
    if (!up) return start;
    return new Date(addUnit(start, unit, 1).getTime() - 1);
  }

  // Grafana's roundInterval table (ms → ms).
  const ROUND = [[10, 1], [15, 10], [35, 20], [75, 50], [150, 100], [350, 200], [750, 500], [1500, 1000],
    [3500, 2000], [7500, 5000], [12500, 10000], [17500, 15000], [25000, 20000], [45000, 30000], [90000, 60000],
    [210000, 120000], [450000, 300000], [750000, 600000], [1050000, 900000], [1500000, 1200000],
    [2700000, 1800000], [5400000, 3600000], [9000000, 7200000], [16200000, 10800000], [32400000, 21600000],
    [86400000, 43200000], [604800000, 86400000], [1814400000, 604800000], [3628800000, 2592000000]];
  function roundInterval(ms) {
    for (const [limit, value] of ROUND) if (ms < limit) return value;
    return 31536000000;
  }
  function intervalToMs(text) {
    const m = String(text).trim().replace(/^[<>]=?/, "").match(/^(-?\d+(?:\.\d+)?)(ms|[Mwdhmsy])?$/);
    if (!m) return null;
    return parseInt(m[1], 10) * UNIT_MS[m[2] || "s"];
  }
  // Largest unit only, truncated (Grafana's FormatInterval: 90s → "1m").
  function formatInterval(ms) {
    const units = [["y", 31536000000], ["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000], ["ms", 1]];
    for (const [u, size] of units) if (ms >= size) return Math.floor(ms / size) + u;
    return "1ms";
  }
  // Go's Duration.String() for whole milliseconds ("1m0s", "4m0s", "1m15s").
  function goDuration(ms) {
    if (ms < 1000) return ms + "ms";
    const total = ms / 1000;
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = +(total % 60).toFixed(3);
    if (h) return `${h}h${m}m${s}s`;
    if (m) return `${m}m${s}s`;
    return `${s}s`;
  }

  // ---------------------------------------------------------------- units
  function decimalsFor(v) {
    if (!isFinite(v) || v === 0) return 0;
    let dec = -Math.floor(Math.log(Math.abs(v)) / Math.LN10) + 1;
    const magn = Math.pow(10, -dec);
    if (Math.abs(v) / magn > 2.25) dec++;
    if (v % 1 === 0) dec = 0;
    return Math.max(0, dec);
  }
  function toFixed(v, decimals) {
    if (v === null || v === undefined) return "";
    if (!isFinite(v)) return isNaN(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
    const d = decimals === null || decimals === undefined ? decimalsFor(v) : Math.max(0, Math.min(20, decimals));
    if (v === 0) return (0).toFixed(d);
    const f = Math.pow(10, d);
    const s = String(Math.round(v * f) / f);
    if (s.includes("e")) return s;
    const [int, frac = ""] = s.split(".");
    return d ? `${int}.${frac.padEnd(d, "0")}` : int;
  }
  function scaled(factor, ext, offset) {
    return (v, dec) => {
      if (!isFinite(v)) return toFixed(v, dec) + ext[Math.max(0, Math.min(ext.length - 1, offset))];
      let i = v === 0 ? 0 : Math.floor(Math.log(Math.abs(v)) / Math.log(factor));
      i = Math.max(-offset, Math.min(ext.length - offset - 1, i));
      return toFixed(v / Math.pow(factor, i), dec) + ext[offset + i];
    };
  }
  const SI = (u, off = 0) => scaled(1000, [" f", " p", " n", " µ", " m", " ", " k", " M", " G", " T", " P", " E", " Z", " Y"].map(p => p + u), 5 + off);
  const BIN = (u, off = 0) => scaled(1024, [" ", " Ki", " Mi", " Gi", " Ti", " Pi", " Ei", " Zi", " Yi"].map(p => p + u), off);
  const count = sym => { const f = scaled(1000, ["", "K", "M", "B", "T"], 0); return (v, d) => f(v, d) + " " + sym; };
  const suffix = s => (v, d) => toFixed(v, d) + s;
  function timeUnit(steps) {
    return (v, d) => {
      const a = Math.abs(v);
      for (const [limit, div, name] of steps) if (limit === null || a < limit) return toFixed(v / div, d) + name;
      return toFixed(v, d);
    };
  }
  const seconds = (v, d) => {
    if (v === 0) return "0 s";
    const a = Math.abs(v);
    if (a < 1e-6) return toFixed(v * 1e9, d) + " ns";
    if (a < 1e-3) return toFixed(v * 1e6, d) + " µs";
    if (a < 1) return toFixed(v * 1e3, d) + " ms";
    if (a < 60) return toFixed(v, d) + " s";
    if (a < 3600) return toFixed(v / 60, d) + " min";
    if (a < 86400) return toFixed(v / 3600, d) + " hour";
    if (a < 604800) return toFixed(v / 86400, d) + " day";
    if (a < 31536000) return toFixed(v / 604800, d) + " week";
    return toFixed(v / 3.15569e7, d) + " year";
  };
  function duration(v, d, unitMs) {
    if (v === 0) return "0 seconds";
    let ms = Math.abs(v) * unitMs;
    const units = [["year", 31536000000], ["month", 2592000000], ["week", 604800000], ["day", 86400000],
      ["hour", 3600000], ["minute", 60000], ["second", 1000], ["millisecond", 1]];
    const parts = [];
    const wanted = (d || 0) + 1;
    for (const [name, size] of units) {
      if (parts.length >= wanted) break;
      const n = Math.floor(ms / size);
      if (n >= 1 || parts.length) {
        if (n >= 1) parts.push(`${n} ${name}${n === 1 ? "" : "s"}`);
        ms -= n * size;
      }
    }
    return parts.join(", ") + (v < 0 ? " ago" : "");
  }
  const UNITS = {
    none: (v, d) => toFixed(v, d),
    short: scaled(1000, ["", " K", " Mil", " Bil", " Tri", " Quadr", " Quint", " Sext", " Sept"], 0),
    percent: suffix("%"),
    percentunit: (v, d) => toFixed(100 * v, d) + "%",
    bytes: BIN("B"), decbytes: SI("B"), bits: BIN("b"), decbits: SI("b"),
    kbytes: BIN("B", 1), mbytes: BIN("B", 2), gbytes: BIN("B", 3), tbytes: BIN("B", 4),
    deckbytes: SI("B", 1), decmbytes: SI("B", 2), decgbytes: SI("B", 3), dectbytes: SI("B", 4),
    Bps: SI("B/s"), bps: SI("b/s"), binBps: BIN("B/s"), binbps: BIN("b/s"), pps: SI("p/s"),
    KBs: SI("B/s", 1), MBs: SI("B/s", 2), GBs: SI("B/s", 3), Kbits: SI("b/s", 1), Mbits: SI("b/s", 2), Gbits: SI("b/s", 3),
    KiBs: BIN("B/s", 1), MiBs: BIN("B/s", 2), GiBs: BIN("B/s", 3),
    ops: count("ops/s"), reqps: count("req/s"), rps: count("rd/s"), wps: count("wr/s"), iops: count("io/s"),
    cps: count("c/s"), eps: count("evt/s"), mps: count("msg/s"), recps: count("rec/s"), rowsps: count("rows/s"),
    cpm: count("c/m"), opm: count("ops/m"), reqpm: count("req/m"), rpm: count("rd/m"), wpm: count("wr/m"),
    hertz: SI("Hz"), rothz: SI("Hz"), rotrpm: suffix(" rpm"),
    celsius: suffix(" °C"), fahrenheit: suffix(" °F"), kelvin: suffix(" K"), humidity: suffix(" %H"), dB: suffix(" dB"),
    watt: SI("W"), volt: SI("V"), amp: SI("A"), joule: SI("J"), watth: SI("Wh"),
    ns: timeUnit([[1e3, 1, " ns"], [1e6, 1e3, " µs"], [1e9, 1e6, " ms"], [6e10, 1e9, " s"], [3.6e12, 6e10, " min"], [8.64e13, 3.6e12, " hour"], [null, 8.64e13, " day"]]),
    "µs": timeUnit([[1e3, 1, " µs"], [1e6, 1e3, " ms"], [null, 1e6, " s"]]),
    ms: timeUnit([[1e3, 1, " ms"], [6e4, 1e3, " s"], [3.6e6, 6e4, " min"], [8.64e7, 3.6e6, " hour"], [3.1536e10, 8.64e7, " day"], [null, 3.1536e10, " year"]]),
    s: seconds,
    m: timeUnit([[60, 1, " min"], [1440, 60, " hour"], [10080, 1440, " day"], [604800, 10080, " week"], [null, 5.25948e5, " year"]]),
    h: timeUnit([[24, 1, " hour"], [168, 24, " day"], [8760, 168, " week"], [null, 8760, " year"]]),
    d: timeUnit([[7, 1, " day"], [365, 7, " week"], [null, 365, " year"]]),
    dtdurations: (v, d) => duration(v, d, 1000), dtdurationms: (v, d) => duration(v, d, 1),
    bool: v => (v ? "True" : "False"), bool_yes_no: v => (v ? "Yes" : "No"), bool_on_off: v => (v ? "On" : "Off"),
    currencyUSD: (v, d) => "$" + scaled(1000, ["", "K", "M", "B", "T"], 0)(v, d),
    currencyEUR: (v, d) => "€" + scaled(1000, ["", "K", "M", "B", "T"], 0)(v, d),
    dateTimeAsIso: v => new Date(v).toISOString().replace("T", " ").slice(0, 19),
  };
  UNITS.us = UNITS["µs"];
  function formatValue(v, unit, decimals) {
    if (v === null || v === undefined) return "No data";
    unit = unit || "short";
    const dec = decimals === undefined || decimals === null || decimals === "" ? null : Number(decimals);
    let f = UNITS[unit];
    if (!f) {
      if (unit.startsWith("suffix:")) f = suffix(" " + unit.slice(7));
      else if (unit.startsWith("prefix:")) { const p = unit.slice(7); f = (x, d) => p + toFixed(x, d); }
      else if (unit.startsWith("si:")) f = SI(unit.slice(3));
      else if (unit.startsWith("count:")) f = count(unit.slice(6));
      else if (unit.startsWith("currency:")) { const p = unit.slice(9); f = (x, d) => p + scaled(1000, ["", "K", "M", "B", "T"], 0)(x, d); }
      else f = suffix(" " + unit);
    }
    return f(v, dec).trim();
  }

  // ---------------------------------------------------------------- colours
  const SHADES = {
    red: ["#FFA6B0", "#FF7383", "#F2495C", "#E02F44", "#C4162A"],
    orange: ["#FFCB7D", "#FFB357", "#FF9830", "#FF780A", "#FA6400"],
    yellow: ["#FFF899", "#FFEE52", "#FADE2A", "#F2CC0C", "#E0B400"],
    green: ["#C8F2C2", "#96D98D", "#73BF69", "#56A64B", "#37872D"],
    blue: ["#C0D8FF", "#8AB8FF", "#5794F2", "#3274D9", "#1F60C4"],
    purple: ["#DEB6F2", "#CA95E5", "#B877D9", "#A352CC", "#8F3BB8"],
  };
  const PREFIX = { "super-light-": 0, "light-": 1, "": 2, "semi-dark-": 3, "dark-": 4 };
  function color(name) {
    if (!name) return null;
    for (const [p, i] of Object.entries(PREFIX)) {
      if (name.startsWith(p) && SHADES[name.slice(p.length)]) return SHADES[name.slice(p.length)][i];
    }
    if (name === "text") return "#1d2330";
    if (name === "transparent") return "rgba(0,0,0,0)";
    return name;
  }
  const PALETTE = ["green", "yellow", "blue", "orange", "red", "purple", "dark-green", "dark-yellow", "dark-blue",
    "dark-orange", "dark-red", "dark-purple", "super-light-green", "super-light-yellow", "super-light-blue",
    "super-light-orange", "super-light-red", "super-light-purple", "#447EBC", "#C15C17", "#890F02", "#0A437C",
    "#6D1F62", "#584477", "#B7DBAB", "#F4D598", "#70DBED", "#F9BA8F", "#F29191", "#82B5D8", "#E5A8E2", "#AEA2E0"].map(color);
  const DEFAULT_THRESHOLDS = { mode: "absolute", steps: [{ color: "green", value: null }, { color: "red", value: 80 }] };
  function thresholdColor(v, cfg, min, max) {
    const th = cfg.thresholds || DEFAULT_THRESHOLDS;
    const steps = th.steps || [];
    if (!steps.length) return null;
    let test = v;
    if (th.mode === "percentage") {
      const lo = cfg.min ?? min ?? 0, hi = cfg.max ?? max ?? 100;
      test = hi === lo ? 0 : ((v - lo) / (hi - lo)) * 100;
    }
    let active = steps[0];
    for (const s of steps) {
      if (s.value === null || s.value === undefined || test >= s.value) active = s; else break;
    }
    return color(active.color);
  }
  function fieldColor(cfg, index, v, min, max) {
    const mode = (cfg.color && cfg.color.mode) || null;
    if (mode === "fixed" || mode === "shades") return color(cfg.color.fixedColor) || PALETTE[0];
    if (mode === "thresholds" && v !== null && v !== undefined) return thresholdColor(v, cfg, min, max);
    return PALETTE[index % PALETTE.length];
  }
  function mapValue(v, mappings) {
    for (const m of mappings || []) {
      const o = m.options || {};
      if (m.type === "value" && v !== null && o[String(v)]) return o[String(v)];
      if (m.type === "range" && v !== null && (o.from === null || o.from === undefined || v >= o.from) && (o.to === null || o.to === undefined || v <= o.to)) return o.result;
      if (m.type === "special") {
        const match = o.match;
        if ((match === "null" || match === "null+nan") && (v === null || v === undefined)) return o.result;
        if ((match === "nan" || match === "null+nan") && Number.isNaN(v)) return o.result;
        if (match === "true" && v === 1) return o.result;
        if (match === "false" && v === 0) return o.result;
      }
      if (m.type === "regex" && v !== null) {
        try { if (new RegExp(o.pattern).test(String(v))) return o.result; } catch (e) { /* a bad pattern maps nothing */ }
      }
      // Schema < 30: {type: 1, value, text} and {type: 2, from, to, text}.
      if (m.type === 1 && v !== null && String(m.value) === String(v)) return { text: m.text };
      if (m.type === 1 && m.value === "null" && (v === null || v === undefined)) return { text: m.text };
      if (m.type === 2 && v !== null && v >= Number(m.from) && v <= Number(m.to)) return { text: m.text };
    }
    return null;
  }

  // ---------------------------------------------------------------- reducers
  function reduce(values, calc) {
    const nums = values.filter(v => v !== null && v !== undefined);
    const first = nums.length ? nums[0] : null, last = nums.length ? nums[nums.length - 1] : null;
    switch ({ current: "lastNotNull", avg: "mean", total: "sum" }[calc] || calc) {
      case "last": return values.length ? values[values.length - 1] : null;
      case "first": return values.length ? values[0] : null;
      case "firstNotNull": return first;
      case "mean": return nums.length ? nums.reduce((a, b) => a + b, 0) / nums.length : null;
      case "sum": return nums.reduce((a, b) => a + b, 0);
      case "max": return nums.length ? Math.max(...nums) : null;
      case "min": return nums.length ? Math.min(...nums) : null;
      case "count": return values.length;
      case "range": return nums.length ? Math.max(...nums) - Math.min(...nums) : null;
      case "diff": return nums.length ? last - first : null;
      case "delta": {
        let d = 0;
        for (let i = 1; i < nums.length; i++) d += nums[i] >= nums[i - 1] ? nums[i] - nums[i - 1] : nums[i];
        return nums.length ? d : null;
      }
      case "median": {
        if (!nums.length) return null;
        const s = [...nums].sort((a, b) => a - b);
        return s[Math.floor(s.length / 2)];
      }
      case "lastNotNull":
      default: return last;
    }
  }

  // ---------------------------------------------------------------- variables
  const escapeRegex = s => String(s).replace(/[\\^$*+?.()|[\]{}\/]/g, "\\$&");
  const promRegular = s => typeof s === "string" ? s.replace(/\\/g, "\\\\").replace(/'/g, "\\\\'") : s;
  const promSpecial = s => String(s).replace(/\\/g, "\\\\\\\\").replace(/[$^*{}\[\]'+?.()|]/g, "\\\\$&");
  const luceneEscape = s => /^-?\d+(\.\d+)?$/.test(String(s)) ? String(s) : String(s).replace(/([!*+\-=<>\s&|()[\]{}^~?:\\/"])/g, "\\$1");
  const FORMATS = {
    glob: v => Array.isArray(v) ? (v.length > 1 ? `{${v.join(",")}}` : String(v[0] ?? "")) : String(v),
    regex: v => Array.isArray(v) ? (v.length === 1 ? escapeRegex(v[0]) : `(${v.map(escapeRegex).join("|")})`) : escapeRegex(v),
    pipe: v => Array.isArray(v) ? v.join("|") : String(v),
    csv: v => Array.isArray(v) ? v.join(",") : String(v),
    json: v => Array.isArray(v) ? JSON.stringify(v) : String(v),
    lucene: v => Array.isArray(v) ? (v.length ? `(${v.map(x => `"${luceneEscape(x)}"`).join(" OR ")})` : "__empty__") : luceneEscape(v),
    raw: v => String(v),
    singlequote: v => (Array.isArray(v) ? v : [v]).map(x => `'${String(x).replace(/'/g, "\\'")}'`).join(","),
    doublequote: v => (Array.isArray(v) ? v : [v]).map(x => `"${String(x).replace(/"/g, '\\"')}"`).join(","),
    sqlstring: v => (Array.isArray(v) ? v : [v]).map(x => `'${String(x).replace(/'/g, "''")}'`).join(","),
    percentencode: v => encodeURIComponent(FORMATS.glob(v)).replace(/[!'()*]/g, c => "%" + c.charCodeAt(0).toString(16).toUpperCase()),
    uriencode: v => encodeURI(FORMATS.glob(v)),
    html: v => (Array.isArray(v) ? v.join(", ") : String(v)).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])),
    distributed: (v, name) => Array.isArray(v) ? [v[0], ...v.slice(1).map(x => `${name}=${x}`)].join(",") : String(v),
  };
  // The Prometheus data source's default interpolation.
  function promFormat(value, variable) {
    if (!variable.multi && !variable.includeAll) return Array.isArray(value) ? value.map(promRegular).join("|") : promRegular(value);
    if (!Array.isArray(value)) return promSpecial(value);
    const esc = value.map(promSpecial);
    return esc.length === 1 ? esc[0] : `(${esc.join("|")})`;
  }
  const VAR_RE = /\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}/g;

  class Variables {
    constructor(list, url) {
      this.list = list || [];
      this.byName = new Map(this.list.map(v => [v.name, v]));
      this.state = new Map(); // name → {value, text, options}
      this.url = url;
      this.builtins = {};
    }
    // The value of `name`: a string, an array, or the All marker.
    resolved(name) {
      const v = this.byName.get(name);
      const s = this.state.get(name);
      if (!v || !s) return undefined;
      const isAll = s.value === "$__all" || (Array.isArray(s.value) && s.value.includes("$__all"));
      if (isAll) {
        if (v.allValue) return { raw: v.allValue, all: true };
        return { value: s.options.map(o => o.value).filter(x => x !== "$__all"), all: true };
      }
      return { value: s.value };
    }
    interpolate(text, format, scoped) {
      if (typeof text !== "string" || !text.includes("$") && !text.includes("[[")) return text;
      return text.replace(VAR_RE, (whole, n1, n2, f2, n3, _path, f3) => {
        const name = n1 || n2 || n3;
        const fmt = f2 || f3;
        if (scoped && name in scoped) return String(scoped[name]);
        if (name in this.builtins) return String(this.builtins[name]);
        const v = this.byName.get(name);
        if (!v) return whole;
        const r = this.resolved(name);
        if (!r) return whole;
        if (r.raw !== undefined) {
          if (fmt === "text") return "All";
          if (fmt === "queryparam") return `var-${name}=All`;
          return this.interpolate(r.raw, format, scoped);
        }
        const value = r.value;
        if (fmt === "text") {
          const s = this.state.get(name);
          return r.all ? "All" : (Array.isArray(s.text) ? s.text.join(" + ") : String(s.text ?? value));
        }
        if (fmt === "queryparam") return (Array.isArray(value) ? value : [value]).map(x => `var-${name}=${encodeURIComponent(x)}`).join("&");
        if (fmt && FORMATS[fmt]) return FORMATS[fmt](value, name);
        if (fmt) return FORMATS.glob(value);
        if (format) return format(value, v);
        return FORMATS.glob(value);
      });
    }
    // Names a text refers to.
    static refs(text) {
      const out = new Set();
      if (typeof text !== "string") return out;
      for (const m of text.matchAll(VAR_RE)) out.add(m[1] || m[2] || m[4]);
      return out;
    }
  }

  function parseCustom(query) {
    const items = String(query || "").match(/(?:\\,|[^,])+/g) || [];
    return items.map(item => {
      item = item.replace(/\\,/g, ",");
      const kv = item.match(/^\s*(.+)\s:\s(.+)$/);
      return kv ? { text: kv[1].trim(), value: kv[2].trim() } : { text: item.trim(), value: item.trim() };
    });
  }
  function regexFilter(options, regex) {
    if (!regex) return options;
    let re;
    try {
      const m = regex.match(/^\/(.*)\/([gimsuy]*)$/);
      re = m ? new RegExp(m[1], m[2]) : new RegExp("^" + regex + "$");
    } catch (e) { throw new Error(`the variable regex ${regex} is invalid: ${e.message}`); }
    const out = [];
    for (const o of options) {
      re.lastIndex = 0;
      const m = re.exec(o.value);
      if (!m) continue;
      if (m.groups && (m.groups.value !== undefined || m.groups.text !== undefined)) {
        const value = m.groups.value ?? m.groups.text, text = m.groups.text ?? m.groups.value;
        out.push({ text, value });
      } else if (m.length > 1 && m[1] !== undefined) out.push({ text: m[1], value: m[1] });
      else out.push(o);
    }
    return out;
  }
  function sortOptions(options, sort) {
    const num = o => { const m = String(o.text).match(/.*?(\d+).*/); return m ? parseInt(m[1], 10) : -1; };
    const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "accent" });
    const by = {
      1: (a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0),
      2: (a, b) => (a.text > b.text ? -1 : a.text < b.text ? 1 : 0),
      3: (a, b) => num(a) - num(b), 4: (a, b) => num(b) - num(a),
      5: (a, b) => a.text.toLowerCase().localeCompare(b.text.toLowerCase()),
      6: (a, b) => b.text.toLowerCase().localeCompare(a.text.toLowerCase()),
      7: (a, b) => collator.compare(a.text, b.text), 8: (a, b) => collator.compare(b.text, a.text),
    }[sort];
    return by ? [...options].sort(by) : options;
  }
  function labelsText(metric) {
    const name = metric.__name__ || "";
    const rest = Object.entries(metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`).join(",");
    return rest ? `${name}{${rest}}` : name;
  }
  // A query variable's options through the Prometheus API, as Grafana asks for them.
  async function prometheusOptions(query, range) {
    const start = Math.ceil(range.from / 1000), end = Math.ceil(range.to / 1000);
    let m;
    if ((m = query.match(/^label_names\(\)\s*$/))) {
      const body = await api(`/api/v1/labels?start=${start}&end=${end}`);
      return body.data.filter(l => l !== "__name__").sort().map(t => ({ text: t, value: t }));
    }
    if ((m = query.match(/^label_names\((.+)\)\s*$/))) {
      const body = await post("/api/v1/labels", [["match[]", m[1]], ["start", start], ["end", end]]);
      return body.data.filter(l => l !== "__name__").map(t => ({ text: t, value: t }));
    }
    if ((m = query.match(/^label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)\s*$/))) {
      const metric = (m[1] || "").trim();
      const params = new URLSearchParams({ start, end });
      if (metric && metric !== "{}") params.append("match[]", metric);
      const body = await api(`/api/v1/label/${encodeURIComponent(m[2])}/values?${params}`);
      return body.data.map(t => ({ text: t, value: t }));
    }
    if ((m = query.match(/^metrics\((.+)\)\s*$/))) {
      const body = await api(`/api/v1/label/__name__/values?start=${start}&end=${end}`);
      let re;
      try { re = new RegExp(m[1]); } catch (e) { throw new Error(`metrics(): ${e.message}`); }
      return body.data.filter(n => re.test(n)).map(t => ({ text: t, value: t }));
    }
    if ((m = query.match(/^query_result\((.+)\)\s*$/))) {
      const body = await post("/api/v1/query", [["query", m[1]], ["time", end]]);
      const d = body.data;
      if (d.resultType === "scalar" || d.resultType === "string") return [{ text: String(d.result[1]), value: String(d.result[1]) }];
      return d.result.map(r => { const t = `${labelsText(r.metric)} ${r.value[1]} ${Math.round(r.value[0] * 1000)}`; return { text: t, value: t }; });
    }
    const body = await post("/api/v1/series", [["match[]", query], ["start", start], ["end", end]]);
    return body.data.map(s => { const t = labelsText(s); return { text: t, value: t }; });
  }

  // ---------------------------------------------------------------- data sources
  // Which API serves a target: prometheus, elasticsearch, jaeger, or why none.
  function sourceOf(ds, vars) {
    if (ds === null || ds === undefined || ds === "") return { kind: "prometheus" };
    let type = "", uid = "";
    if (typeof ds === "string") { uid = ds; type = ds; } else { type = ds.type || ""; uid = ds.uid || ""; }
    uid = vars.interpolate(uid);
    const text = (type + " " + uid).toLowerCase();
    if (/-- ?dashboard ?--|__expr__|-- ?grafana ?--|testdata|-- ?mixed ?--/.test(text)) {
      if (/mixed/.test(text)) return { kind: "mixed" };
      return { kind: "unsupported", why: `the data source ${JSON.stringify(type || uid)} is Grafana's own (annotations, expressions or test data); Oxeye has no equivalent` };
    }
    if (text.includes("elasticsearch") || text.includes("opensearch")) return { kind: "elasticsearch" };
    if (text.includes("jaeger") || text.includes("tempo")) return { kind: "jaeger" };
    if (text.includes("loki")) return { kind: "unsupported", why: "Loki (LogQL) queries are not supported: Oxeye's logs speak Elasticsearch's query DSL" };
    if (/mysql|postgres|mssql|influx|graphite|cloudwatch|stackdriver|azure|clickhouse/.test(text)) {
      return { kind: "unsupported", why: `the ${type || uid} data source is not one Oxeye serves` };
    }
    // Prometheus by type, by name, or an exported-dashboard placeholder like ${DS_PROMETHEUS}.
    return { kind: "prometheus" };
  }

  // Step and macros for one Prometheus target (Grafana's promlib rules).
  function promTiming(panel, target, ctx) {
    const range = ctx.range.to - ctx.range.from;
    const scrape = 15000;
    const lowLimit = intervalToMs(ctx.vars.interpolate(panel.interval || "")) || scrape;
    const maxDataPoints = panel.maxDataPoints || ctx.width || 500;
    const intervalMs = Math.max(roundInterval(range / maxDataPoints), lowLimit);
    const rawInterval = String(target.interval || "");
    const isRate = /^\$\{?__rate_interval\}?$/.test(rawInterval);
    let qi = /^\$\{?__(rate_)?interval(_ms)?\}?$/.test(rawInterval) ? "" : ctx.vars.interpolate(rawInterval);
    if (qi === "0s") qi = "";
    const minInterval = qi ? (intervalToMs(qi) ?? intervalMs) : intervalMs;
    const calc = Math.floor(range / (panel.maxDataPoints || ctx.width || 1500));
    const calculated = calc < minInterval ? minInterval : roundInterval(calc);
    const safe = roundInterval(range / 11000);
    const adjusted = Math.max(calculated, safe);
    let step;
    if (isRate) step = Math.max(adjusted + scrape, 4 * scrape);
    else step = adjusted * (target.intervalFactor || 1);
    step = Math.max(1, Math.round(step));
    const minStep = qi ? (intervalToMs(qi) ?? scrape) : scrape;
    const rateInterval = isRate ? step : Math.max(intervalMs + minStep, 4 * minStep);
    const rangeS = Math.round(range / 1000);
    return {
      step, intervalMs,
      macros: {
        __interval_ms: step, __interval: formatInterval(step),
        __rate_interval_ms: rateInterval, __rate_interval: goDuration(rateInterval),
        __range_ms: range, __range_s: rangeS, __range: rangeS + "s",
      },
    };
  }
  const align = (t, step) => Math.floor(t / step) * step;

  function legend(format, metric, expr) {
    if (format && format !== "__auto") {
      return format.replace(/\{\{\s*(.+?)\s*\}\}/g, (_, name) => metric[name] ?? "");
    }
    const name = metric.__name__ || "";
    const labels = Object.keys(metric).filter(k => k !== "__name__").sort().map(k => `${k}=${JSON.stringify(metric[k])}`);
    if (!name && !labels.length) return expr;
    return labels.length ? `${name}{${labels.join(", ")}}` : name;
  }
  const num = s => (s === "NaN" ? NaN : s === "+Inf" ? Infinity : s === "-Inf" ? -Infinity : parseFloat(s));

  // A Prometheus target → frames {name, labels, refId, times (s), values}.
  async function runPrometheus(panel, target, ctx) {
    const timing = promTiming(panel, target, ctx);
    const expr = ctx.vars.interpolate(target.expr || "", promFormat, timing.macros);
    if (!expr.trim()) return { frames: [] };
    const legendFormat = ctx.vars.interpolate(target.legendFormat || "");
    const frames = [];
    const out = { frames, step: timing.step, exemplars: [] };
    const instant = target.instant === true && target.range !== true;
    const both = target.instant === true && target.range === true;
    const to = ctx.range.to, from = ctx.range.from;
    const jobs = [];
    if (!instant) {
      const start = align(from, timing.step) / 1000, end = align(to, timing.step) / 1000;
      jobs.push(post("/api/v1/query_range", [["query", expr], ["start", start], ["end", end], ["step", timing.step / 1000]]).then(body => {
        for (const r of body.data.result) {
          frames.push({
            refId: target.refId, labels: r.metric, name: legend(legendFormat, r.metric, expr),
            times: r.values.map(p => p[0]), values: r.values.map(p => num(p[1])),
          });
        }
      }));
    }
    if (instant || both) {
      jobs.push(post("/api/v1/query", [["query", expr], ["time", to / 1000]]).then(body => {
        const d = body.data;
        const list = d.resultType === "vector" ? d.result : d.resultType === "scalar" ? [{ metric: {}, value: d.result }] :
          d.resultType === "matrix" ? d.result.map(r => ({ metric: r.metric, value: r.values[r.values.length - 1] })) : [];
        for (const r of list) {
          frames.push({
            refId: both ? target.refId + "-Instant" : target.refId, labels: r.metric, instant: true,
            name: legend(legendFormat, r.metric, expr), times: [r.value[0]], values: [num(r.value[1])],
          });
        }
      }));
    }
    if (target.exemplar === true && !instant) {
      const start = align(from, timing.step) / 1000, end = align(to, timing.step) / 1000;
      jobs.push(post("/api/v1/query_exemplars", [["query", expr], ["start", start], ["end", end]]).then(body => {
        out.exemplars.push(...sampleExemplars(body.data || [], timing.step));
      }));
    }
    await Promise.all(jobs);
    if (target.format === "heatmap") out.frames = heatmapFrames(frames);
    return out;
  }
  // Grafana's exemplar sampling: per step bucket keep the largest and any
  // more than 2σ below the one kept before it.
  function sampleExemplars(data, step) {
    const all = [];
    for (const series of data) {
      for (const e of series.exemplars || []) all.push({ t: e.timestamp, v: parseFloat(e.value), labels: { ...series.seriesLabels, ...e.labels } });
    }
    if (!all.length) return [];
    const mean = all.reduce((a, e) => a + e.v, 0) / all.length;
    const sd = all.length > 1 ? Math.sqrt(all.reduce((a, e) => a + (e.v - mean) ** 2, 0) / (all.length - 1)) : 0;
    const buckets = new Map();
    for (const e of all) {
      const k = Math.floor((e.t * 1000) / step);
      if (!buckets.has(k)) buckets.set(k, []);
      buckets.get(k).push(e);
    }
    const kept = [];
    for (const list of buckets.values()) {
      list.sort((a, b) => b.v - a.v);
      let prev = list[0];
      kept.push(prev);
      for (const e of list.slice(1)) if (sd !== 0 && prev.v - e.v > 2 * sd) { kept.push(e); prev = e; }
    }
    return kept.sort((a, b) => a.t - b.t);
  }
  // format: heatmap — group by labels without le, sort by le, de-cumulate.
  function heatmapFrames(frames) {
    const groups = new Map();
    for (const f of frames) {
      const rest = { ...f.labels }; delete rest.le;
      const key = JSON.stringify(rest);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(f);
    }
    const out = [];
    for (const list of groups.values()) {
      list.sort((a, b) => parseFloat(a.labels.le ?? a.name) - parseFloat(b.labels.le ?? b.name));
      for (let i = list.length - 1; i > 0; i--) {
        const cur = list[i], prev = list[i - 1];
        const at = new Map(prev.times.map((t, j) => [t, prev.values[j]]));
        cur.values = cur.values.map((v, j) => v - (at.get(cur.times[j]) ?? 0));
      }
      for (const f of list) { f.name = f.labels.le ?? f.name; f.bucket = true; out.push(f); }
    }
    return out;
  }

  // Grafana's Elasticsearch data source: the _msearch body it builds.
  function esRequest(target, ctx, step) {
    const query = ctx.vars.interpolate(target.query || "*", FORMATS.lucene) || "*";
    const timeField = target.timeField || "@timestamp";
    const filter = [{ range: { [timeField]: { gte: ctx.range.from, lte: ctx.range.to, format: "epoch_millis" } } },
      { query_string: { analyze_wildcard: true, query } }];
    const metrics = target.metrics || [{ type: "count", id: "1" }];
    const kind = metrics[0] && metrics[0].type;
    if (kind === "logs" || kind === "raw_data" || kind === "raw_document") {
      const size = Number((metrics[0].settings || {}).size || (metrics[0].settings || {}).limit || 500);
      return { kind: "logs", body: { size: Math.min(size, 10000), query: { bool: { filter } }, sort: [{ [timeField]: { order: "desc", unmapped_type: "boolean" } }, { _doc: { order: "desc" } }],
        highlight: { fields: { "*": {} }, pre_tags: ["@HIGHLIGHT@"], post_tags: ["@/HIGHLIGHT@"], fragment_size: 2147483647 } } };
    }
    const aggs = {};
    let cursor = aggs;
    const buckets = target.bucketAggs && target.bucketAggs.length ? target.bucketAggs : [{ type: "date_histogram", id: "2", field: timeField, settings: { interval: "auto" } }];
    for (const b of buckets) {
      const s = b.settings || {};
      let agg;
      if (b.type === "date_histogram") {
        const iv = !s.interval || s.interval === "auto" ? formatInterval(step) : ctx.vars.interpolate(s.interval);
        agg = { date_histogram: { field: b.field || timeField, fixed_interval: iv, min_doc_count: Number(s.min_doc_count || 0), extended_bounds: { min: ctx.range.from, max: ctx.range.to }, format: "epoch_millis" } };
      } else if (b.type === "terms") {
        agg = { terms: { field: b.field, size: Number(s.size || 10) || 500, order: { [s.orderBy === "_term" ? "_key" : (s.orderBy || "_count")]: s.order || "desc" }, min_doc_count: Number(s.min_doc_count || 1) } };
      } else if (b.type === "filters") {
        const f = {};
        for (const q of s.filters || [{ query: "*" }]) f[q.label || q.query] = { query_string: { query: ctx.vars.interpolate(q.query, FORMATS.lucene), analyze_wildcard: true } };
        agg = { filters: { filters: f } };
      } else if (b.type === "histogram") {
        agg = { histogram: { field: b.field, interval: Number(s.interval || 1000), min_doc_count: Number(s.min_doc_count || 0) } };
      } else {
        throw new Error(`the ${b.type} bucket aggregation is not supported in panels yet`);
      }
      agg.aggs = {};
      cursor[b.id] = agg;
      cursor = agg.aggs;
    }
    for (const m of metrics) {
      if (m.type === "count" || m.hide) continue;
      const field = m.field;
      if (["avg", "sum", "min", "max", "cardinality", "value_count"].includes(m.type)) cursor[m.id] = { [m.type]: { field } };
      else if (m.type === "percentiles") cursor[m.id] = { percentiles: { field, percents: (m.settings && m.settings.percents) || [25, 50, 75, 95, 99] } };
      else if (["derivative", "cumulative_sum", "moving_avg", "moving_fn", "serial_diff", "bucket_script"].includes(m.type)) {
        const path = m.pipelineAgg === "count" || !m.pipelineAgg ? "_count" : m.pipelineAgg;
        if (m.type === "bucket_script") {
          const paths = {};
          for (const v of m.pipelineVariables || []) paths[v.name] = v.pipelineAgg === "count" ? "_count" : v.pipelineAgg;
          cursor[m.id] = { bucket_script: { buckets_path: paths, script: (m.settings && m.settings.script) || "" } };
        } else if (m.type === "moving_fn") {
          cursor[m.id] = { moving_fn: { buckets_path: path, window: Number((m.settings || {}).window || 5), script: (m.settings || {}).script || "MovingFunctions.unweightedAvg(values)" } };
        } else cursor[m.id] = { [m.type]: { buckets_path: path } };
      } else throw new Error(`the ${m.type} metric is not supported in panels yet`);
    }
    return { kind: "metrics", body: { size: 0, query: { bool: { filter } }, aggs } };
  }
  async function runElasticsearch(panel, target, ctx) {
    const timing = promTiming(panel, {}, ctx);
    const req = esRequest(target, ctx, timing.step);
    const ndjson = JSON.stringify({ index: target.index || "*", ignore_unavailable: true }) + "\n" + JSON.stringify(req.body) + "\n";
    const body = await api("/es/_msearch", { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: ndjson });
    const r = body.responses[0];
    if (r.error) throw new Error(r.error.reason || JSON.stringify(r.error));
    if (req.kind === "logs") return { logs: r.hits.hits };
    // Flatten: every path of terms/filters down to the date histogram → one frame per metric.
    const frames = [];
    const metrics = (target.metrics || [{ type: "count", id: "1" }]).filter(m => !m.hide);
    const walk = (aggs, depth, labels) => {
      const b = (target.bucketAggs && target.bucketAggs.length ? target.bucketAggs : [{ type: "date_histogram", id: "2" }])[depth];
      const node = aggs[b.id];
      if (!node) return;
      const list = Array.isArray(node.buckets) ? node.buckets : Object.entries(node.buckets || {}).map(([k, v]) => ({ key: k, ...v }));
      if (b.type === "date_histogram") {
        for (const m of metrics) {
          const pick = x => m.type === "count" ? x.doc_count : x[m.id] ? (x[m.id].value ?? (x[m.id].values ? Object.values(x[m.id].values)[0] : null)) : null;
          const name = [Object.values(labels).join(" "), m.type === "count" ? "Count" : `${m.type} ${m.field || m.pipelineAgg || ""}`.trim()].filter(Boolean).join(" ");
          frames.push({ refId: target.refId, labels, name, times: list.map(x => x.key / 1000), values: list.map(pick) });
        }
      } else {
        for (const x of list) walk(x, depth + 1, { ...labels, [b.field || b.type]: String(x.key_as_string ?? x.key) });
      }
    };
    walk(r.aggregations || {}, 0, {});
    return { frames };
  }
  async function runJaeger(panel, target, ctx) {
    const query = ctx.vars.interpolate(target.query || "");
    if (target.queryType === "search" || (!query && target.service)) {
      const p = new URLSearchParams({ service: ctx.vars.interpolate(target.service || ""), limit: String(target.limit || 20),
        start: String(ctx.range.from * 1000), end: String(ctx.range.to * 1000) });
      if (target.operation) p.set("operation", ctx.vars.interpolate(target.operation));
      const body = await api(`/api/traces?${p}`);
      return { traces: body.data || [] };
    }
    if (!/^[0-9a-fA-F]{1,32}$/.test(query)) throw new Error(`the Jaeger query ${JSON.stringify(query)} is not a trace id`);
    const body = await api(`/api/traces/${query}`);
    return { traces: body.data || [] };
  }

  // ---------------------------------------------------------------- panels
  const SUPPORTED = new Set(["timeseries", "graph", "stat", "singlestat", "gauge", "bargauge", "table", "table-old", "heatmap", "text", "logs", "traces", "nodeGraph", "row"]);

  // Field config merged with the old graph panel's settings.
  function fieldConfig(panel) {
    const fc = JSON.parse(JSON.stringify(panel.fieldConfig || {}));
    fc.defaults = fc.defaults || {};
    fc.defaults.custom = fc.defaults.custom || {};
    fc.overrides = fc.overrides || [];
    if (panel.type === "graph") {
      const y = (panel.yaxes || [])[0] || {};
      if (y.format) fc.defaults.unit = y.format;
      if (y.decimals !== undefined && y.decimals !== null) fc.defaults.decimals = y.decimals;
      if (y.min !== undefined && y.min !== null && y.min !== "") fc.defaults.min = Number(y.min);
      if (y.max !== undefined && y.max !== null && y.max !== "") fc.defaults.max = Number(y.max);
      if (panel.stack) fc.defaults.custom.stacking = { mode: panel.percentage ? "percent" : "normal" };
      fc.defaults.custom.drawStyle = panel.bars ? "bars" : panel.lines === false ? "points" : "line";
      if (panel.fill !== undefined) fc.defaults.custom.fillOpacity = panel.fill * 10;
      for (const o of panel.seriesOverrides || []) {
        const m = String(o.alias || "").match(/^([/~@;%#'])(.*?)\1([gimsuy]*)$/);
        const props = [];
        if (o.transform === "negative-Y") props.push({ id: "custom.transform", value: "negative-Y" });
        if (o.color) props.push({ id: "color", value: { mode: "fixed", fixedColor: o.color } });
        if (o.stack === false) props.push({ id: "custom.stacking", value: { mode: "none" } });
        if (o.fill !== undefined) props.push({ id: "custom.fillOpacity", value: o.fill * 10 });
        if (o.yaxis === 2 && (panel.yaxes || [])[1] && panel.yaxes[1].format) props.push({ id: "unit", value: panel.yaxes[1].format });
        fc.overrides.push({ matcher: m ? { id: "byRegexp", options: o.alias } : { id: "byName", options: o.alias }, properties: props });
      }
      for (const [name, c] of Object.entries(panel.aliasColors || {})) {
        fc.overrides.push({ matcher: { id: "byName", options: name }, properties: [{ id: "color", value: { mode: "fixed", fixedColor: c } }] });
      }
    }
    if (panel.type === "singlestat") {
      if (panel.format) fc.defaults.unit = panel.format;
      if (panel.decimals !== undefined) fc.defaults.decimals = panel.decimals;
    }
    return fc;
  }
  function matches(matcher, frame) {
    const name = frame.name;
    const o = matcher.options;
    switch (matcher.id) {
      case "byName": return name === o;
      case "byRegexp": {
        try {
          const m = String(o).match(/^\/(.*)\/([gimsuy]*)$/);
          return (m ? new RegExp(m[1], m[2]) : new RegExp("^" + o + "$")).test(name);
        } catch (e) { return false; }
      }
      case "byFrameRefID": return frame.refId === o;
      case "byType": return o === "number";
      case "byNames": { const inc = (o.names || []).includes(name); return o.mode === "exclude" ? !inc : inc; }
      default: return false;
    }
  }
  function setPath(obj, path, value) {
    const parts = path.split(".");
    let cur = obj;
    for (const p of parts.slice(0, -1)) cur = cur[p] = cur[p] && typeof cur[p] === "object" ? cur[p] : {};
    cur[parts[parts.length - 1]] = value;
  }
  // Each frame's effective config: defaults, then every matching override.
  function configFor(fc, frame) {
    const cfg = JSON.parse(JSON.stringify(fc.defaults));
    for (const o of fc.overrides) {
      if (!o.matcher || !matches(o.matcher, frame)) continue;
      for (const p of o.properties || []) setPath(cfg, p.id, p.value);
    }
    if (cfg.displayName) frame.name = cfg.displayName.replace(/\$\{__field\.labels\.(\w+)\}/g, (_, l) => frame.labels[l] ?? "");
    return cfg;
  }

  function message(box, text, cls) {
    box.replaceChildren(el("div", { class: "panel-msg " + (cls || "") }, text));
  }

  function drawTimeseries(panel, box, result, fc, ctx) {
    const all = result.frames.filter(f => !f.instant);
    if (!all.length) return message(box, "No data");
    const allCfgs = all.map(f => configFor(fc, f));
    // custom.hideFrom.viz: not drawn (Grafana's "hide series").
    const shown = all.map((f, i) => !(allCfgs[i].custom && allCfgs[i].custom.hideFrom && allCfgs[i].custom.hideFrom.viz));
    const frames = all.filter((_, i) => shown[i]);
    const cfgs = allCfgs.filter((_, i) => shown[i]);
    if (!frames.length) return message(box, "Every series is hidden by the panel's overrides");
    const times = [...new Set(frames.flatMap(f => f.times))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const unit = cfgs[0].unit, decimals = cfgs[0].decimals;
    const stacking = (fc.defaults.custom.stacking || {}).mode || "none";
    const cols = frames.map((f, i) => {
      const col = new Array(times.length).fill(null);
      const sign = cfgs[i].custom && cfgs[i].custom.transform === "negative-Y" ? -1 : 1;
      f.times.forEach((t, j) => { const v = f.values[j]; col[index.get(t)] = v === null || !isFinite(v) ? null : sign * v; });
      return col;
    });
    let data = cols;
    // Each series stacks unless its own config says none (an override).
    const stacks = cfgs.map(c => ((c.custom && c.custom.stacking) || {}).mode || stacking);
    if (stacks.some(m => m === "normal" || m === "percent")) {
      const acc = new Array(times.length).fill(0);
      const members = cols.filter((_, i) => stacks[i] !== "none");
      const totals = stacking === "percent" ? times.map((_, j) => members.reduce((a, c) => a + Math.abs(c[j] || 0), 0)) : null;
      data = cols.map((c, i) => stacks[i] === "none" ? c : c.map((v, j) => {
        if (v === null) return null;
        acc[j] += stacking === "percent" ? (totals[j] ? v / totals[j] : 0) : v;
        return acc[j];
      }));
    }
    const series = [{}].concat(frames.map((f, i) => {
      const c = cfgs[i];
      const stroke = fieldColor(c, i, null);
      const fill = (c.custom && c.custom.fillOpacity) || 0;
      const bars = c.custom && c.custom.drawStyle === "bars";
      return {
        label: f.name, stroke, width: (c.custom && c.custom.lineWidth) ?? 1,
        fill: fill || stacking !== "none" ? hexAlpha(stroke, Math.max(fill, stacking !== "none" ? 30 : 0) / 100) : undefined,
        paths: bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 100] }) : undefined,
        points: { show: c.custom && c.custom.drawStyle === "points" ? true : times.length < 3 },
        spanGaps: c.custom && c.custom.spanNulls === true,
        value: (u, v) => v === null ? "" : formatValue(v, c.unit, c.decimals),
      };
    }));
    const min = fc.defaults.min;
    const max = fc.defaults.max;
    const height = Math.max(60, box.clientHeight - 28);
    const exemplars = result.exemplars || [];
    const opts = {
      width: Math.max(120, box.clientWidth), height,
      series,
      legend: { show: (panel.options && panel.options.legend && panel.options.legend.showLegend === false) ? false : frames.length <= 30 },
      // The dashboard's time range, as Grafana draws it (not the data's).
      scales: { x: { time: true, range: () => [ctx.range.from / 1000, ctx.range.to / 1000] }, y: { range: (u, lo, hi) => {
        // Exemplars share the axis: the scale reaches them.
        for (const e of exemplars) { if (e.v < lo) lo = e.v; if (e.v > hi) hi = e.v; }
        let a = min ?? lo, b = max ?? hi;
        if (stacking === "percent") { a = 0; b = 1; }
        const soft = fc.defaults.custom;
        if (soft.axisSoftMin !== undefined && soft.axisSoftMin !== null) a = Math.min(a, soft.axisSoftMin);
        if (soft.axisSoftMax !== undefined && soft.axisSoftMax !== null) b = Math.max(b, soft.axisSoftMax);
        if (a === b) { a -= 1; b += 1; }
        return [a, b];
      } } },
      axes: [{}, {
        values: (u, vals) => vals.map(v => formatValue(v, stacking === "percent" ? "percentunit" : unit, decimals)),
        // Wide enough for the longest tick label.
        size: (u, vals) => 18 + 7 * Math.max(3, ...(vals || []).map(v => String(v).length)),
      }],
      hooks: { draw: [u => drawExemplars(u, exemplars)] },
    };
    box.replaceChildren();
    const plot = new uPlot(opts, [times, ...data], box);
    // For "explore" links and the browser tests: the plot and its exemplars.
    box.oxPlot = plot;
    box.oxExemplars = exemplars;
    if (exemplars.length) {
      box.dataset.exemplars = String(exemplars.length);
      plot.over.addEventListener("click", ev => {
        const hit = exemplarAt(plot, exemplars, ev.offsetX, ev.offsetY);
        const id = hit && (hit.labels.trace_id || hit.labels.traceID || hit.labels.traceId);
        if (id) location.href = "/ui/traces/" + encodeURIComponent(id);
      });
      plot.over.addEventListener("mousemove", ev => {
        const hit = exemplarAt(plot, exemplars, ev.offsetX, ev.offsetY);
        plot.over.style.cursor = hit ? "pointer" : "";
        plot.over.title = hit ? `exemplar ${formatValue(hit.v, unit, decimals)}\n${Object.entries(hit.labels).map(([k, v]) => `${k}=${v}`).join("\n")}\nclick to open the trace` : "";
      });
    }
    return plot;
  }
  function exemplarAt(u, exemplars, x, y) {
    for (const e of exemplars) {
      const px = u.valToPos(e.t, "x"), py = u.valToPos(e.v, "y");
      if (Math.abs(px - x) <= 6 && Math.abs(py - y) <= 6) return e;
    }
    return null;
  }
  function drawExemplars(u, exemplars) {
    if (!exemplars.length) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = "#B877D9";
    ctx.strokeStyle = "#5b2c83";
    const r = 5 * devicePixelRatio;
    for (const e of exemplars) {
      const x = u.valToPos(e.t, "x", true), y = u.valToPos(e.v, "y", true);
      if (!isFinite(x) || !isFinite(y)) continue;
      ctx.beginPath();
      ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath();
      ctx.fill(); ctx.stroke();
    }
    ctx.restore();
  }
  function hexAlpha(c, a) {
    const m = /^#([0-9a-f]{6})$/i.exec(c || "");
    if (!m) return c;
    const n = parseInt(m[1], 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
  }

  // stat, gauge and bargauge: one reduced value per series.
  function reduced(panel, result, fc) {
    const ro = (panel.options && panel.options.reduceOptions) || {};
    let calc = (ro.calcs && ro.calcs[0]) || "lastNotNull";
    if (panel.type === "singlestat") calc = { current: "lastNotNull", avg: "mean", total: "sum" }[panel.valueName] || panel.valueName || "mean";
    const out = [];
    const frames = result.frames;
    const all = frames.flatMap(f => f.values.filter(v => v !== null && isFinite(v)));
    const gmin = all.length ? Math.min(...all) : 0, gmax = all.length ? Math.max(...all) : 100;
    let fieldRe = null;
    if (ro.fields && ro.fields !== "/^Value$/" && ro.fields !== "") {
      const m = String(ro.fields).match(/^\/(.*)\/([gimsuy]*)$/);
      try { fieldRe = m ? new RegExp(m[1], m[2]) : null; } catch (e) { fieldRe = null; }
    }
    frames.forEach((f, i) => {
      if (fieldRe && !fieldRe.test(f.name)) return;
      const cfg = configFor(fc, f);
      if (ro.values) {
        f.values.forEach((v, j) => out.push({ name: f.name, value: v, cfg, index: i, spark: null, t: f.times[j] }));
      } else {
        out.push({ name: f.name, value: reduce(f.values, calc), cfg, index: i, spark: f.values.length > 1 ? f : null });
      }
    });
    const limit = ro.limit || 5000;
    return { items: out.slice(0, limit), gmin, gmax };
  }
  function display(item, gmin, gmax, fallbackUnit) {
    const cfg = item.cfg;
    const mapped = mapValue(item.value, cfg.mappings);
    const text = mapped && mapped.text !== undefined ? mapped.text : (item.value === null || item.value === undefined ? (cfg.noValue || "No data") : formatValue(item.value, cfg.unit || fallbackUnit, cfg.decimals));
    let c = mapped && mapped.color ? color(mapped.color) : null;
    if (!c) {
      const mode = (cfg.color && cfg.color.mode) || "thresholds";
      c = mode === "thresholds" ? (item.value === null || item.value === undefined ? "#8e8e8e" : thresholdColor(item.value, cfg, gmin, gmax)) : fieldColor(cfg, item.index, item.value, gmin, gmax);
    }
    return { text: String(text), color: c || "#73BF69" };
  }
  function drawStat(panel, box, result, fc) {
    const { items, gmin, gmax } = reduced(panel, result, fc);
    if (!items.length) return message(box, "No data");
    const opts = panel.options || {};
    const colorMode = opts.colorMode || "value";
    const grid = el("div", { class: "stat-grid" });
    const textMode = opts.textMode || "auto";
    for (const item of items) {
      const d = display(item, gmin, gmax);
      const cell = el("div", { class: "stat" });
      if (colorMode === "background" || colorMode === "background_solid") { cell.style.background = d.color; cell.style.color = "#fff"; }
      const value = el("div", { class: "stat-value" }, d.text);
      if (colorMode === "value") value.style.color = d.color;
      const showName = textMode === "value_and_name" || textMode === "name" || (textMode === "auto" && items.length > 1);
      if (showName) cell.append(el("div", { class: "stat-name" }, item.name));
      if (textMode !== "name" && textMode !== "none") cell.append(value);
      if (item.spark && (opts.graphMode || "area") === "area") cell.append(sparkline(item.spark.values, d.color));
      grid.append(cell);
    }
    box.replaceChildren(grid);
    fitText(grid);
  }
  function sparkline(values, c) {
    const pts = values.map((v, i) => [i, v]).filter(p => p[1] !== null && isFinite(p[1]));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark");
    if (pts.length > 1) {
      const lo = Math.min(...pts.map(p => p[1])), hi = Math.max(...pts.map(p => p[1]));
      const n = values.length - 1 || 1;
      const d = pts.map(([i, v], k) => `${k ? "L" : "M"}${(i / n) * 100},${30 - (hi === lo ? 15 : ((v - lo) / (hi - lo)) * 28 + 1)}`).join("");
      const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", d + `L100,30L0,30Z`);
      path.setAttribute("fill", hexAlpha(c, 0.18));
      path.setAttribute("stroke", c);
      path.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(path);
    }
    return svg;
  }
  function fitText(grid) {
    const cells = grid.children.length || 1;
    const h = grid.clientHeight / Math.ceil(cells / Math.max(1, Math.floor(grid.clientWidth / 140)));
    grid.style.setProperty("--stat-size", Math.max(12, Math.min(48, h * 0.38)) + "px");
  }
  function drawGauge(panel, box, result, fc) {
    const { items, gmin, gmax } = reduced(panel, result, fc);
    if (!items.length) return message(box, "No data");
    const grid = el("div", { class: "gauge-grid" });
    for (const item of items) {
      const cfg = item.cfg;
      const min = cfg.min ?? 0, max = cfg.max ?? (cfg.unit === "percentunit" ? 1 : 100);
      const d = display(item, gmin, gmax);
      const frac = item.value === null ? 0 : Math.max(0, Math.min(1, (item.value - min) / ((max - min) || 1)));
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 120 80");
      const arc = (f0, f1, stroke, w) => {
        const a0 = Math.PI * (1 - f0) , a1 = Math.PI * (1 - f1);
        const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
        const x0 = 60 + 48 * Math.cos(a0), y0 = 64 - 48 * Math.sin(a0), x1 = 60 + 48 * Math.cos(a1), y1 = 64 - 48 * Math.sin(a1);
        p.setAttribute("d", `M${x0},${y0} A48,48 0 0 1 ${x1},${y1}`);
        p.setAttribute("fill", "none"); p.setAttribute("stroke", stroke); p.setAttribute("stroke-width", w);
        return p;
      };
      svg.append(arc(0, 0.9999, "#e5e8ee", 10));
      if (frac > 0) svg.append(arc(0, Math.min(frac, 0.9999), d.color, 10));
      const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
      t.setAttribute("x", "60"); t.setAttribute("y", "62"); t.setAttribute("text-anchor", "middle"); t.setAttribute("class", "gauge-text");
      t.setAttribute("fill", d.color);
      t.textContent = d.text;
      svg.append(t);
      const cell = el("div", { class: "gauge" }, svg);
      if (items.length > 1) cell.append(el("div", { class: "stat-name" }, item.name));
      grid.append(cell);
    }
    box.replaceChildren(grid);
  }
  function drawBarGauge(panel, box, result, fc) {
    const { items, gmin, gmax } = reduced(panel, result, fc);
    if (!items.length) return message(box, "No data");
    const list = el("div", { class: "bargauge" });
    for (const item of items) {
      const cfg = item.cfg;
      const min = cfg.min ?? 0, max = cfg.max ?? Math.max(gmax, cfg.unit === "percentunit" ? 1 : 100);
      const d = display(item, gmin, gmax);
      const frac = item.value === null ? 0 : Math.max(0, Math.min(1, (item.value - min) / ((max - min) || 1)));
      const bar = el("div", { class: "bg-bar" });
      bar.style.width = (frac * 100).toFixed(1) + "%";
      bar.style.background = d.color;
      const value = el("span", { class: "bg-value" }, d.text);
      value.style.color = d.color;
      list.append(el("div", { class: "bg-row" }, el("span", { class: "bg-name", title: item.name }, item.name), el("div", { class: "bg-track" }, bar), value));
    }
    box.replaceChildren(list);
  }
  function drawTable(panel, box, result, fc) {
    const frames = result.frames;
    if (!frames.length) return message(box, "No data");
    const labelNames = [...new Set(frames.flatMap(f => Object.keys(f.labels || {})))].sort();
    const refs = [...new Set(frames.map(f => f.refId))];
    const valueCols = refs.length > 1 ? refs.map(r => `Value #${r}`) : ["Value"];
    const rows = new Map();
    const instantish = frames.every(f => f.instant || f.values.length === 1);
    for (const f of frames) {
      const cfg = configFor(fc, f);
      f.times.forEach((t, j) => {
        const key = JSON.stringify([instantish ? 0 : t, labelNames.map(l => (f.labels || {})[l] ?? "")]);
        if (!rows.has(key)) rows.set(key, { t, labels: f.labels || {}, values: {} });
        rows.get(key).values[refs.length > 1 ? `Value #${f.refId}` : "Value"] = { v: f.values[j], cfg };
      });
    }
    const head = ["Time", ...labelNames, ...valueCols];
    const table = el("table", { class: "grid panel-table" }, el("thead", {}, el("tr", {}, head.map(h => el("th", {}, h)))));
    const body = el("tbody");
    for (const r of [...rows.values()].slice(0, 1000)) {
      const tr = el("tr", {}, el("td", { class: "nowrap" }, new Date(r.t * 1000).toISOString().replace("T", " ").slice(0, 19)), labelNames.map(l => el("td", {}, r.labels[l] ?? "")));
      for (const c of valueCols) {
        const cell = r.values[c];
        tr.append(el("td", { class: "num" }, cell ? display({ value: cell.v, cfg: cell.cfg, index: 0 }, 0, 100).text : ""));
      }
      body.append(tr);
    }
    table.append(body);
    box.replaceChildren(el("div", { class: "panel-scroll" }, table));
  }
  function drawHeatmap(panel, box, result, fc) {
    const frames = result.frames.filter(f => !f.instant);
    if (!frames.length) return message(box, "No data");
    const times = [...new Set(frames.flatMap(f => f.times))].sort((a, b) => a - b);
    const canvas = el("canvas", { class: "heatmap" });
    const w = Math.max(100, box.clientWidth), h = Math.max(60, box.clientHeight - 22);
    canvas.width = w; canvas.height = h;
    const g = canvas.getContext("2d");
    let hi = 0;
    for (const f of frames) for (const v of f.values) if (v > hi) hi = v;
    const rowH = h / frames.length, colW = w / Math.max(1, times.length);
    const index = new Map(times.map((t, i) => [t, i]));
    frames.forEach((f, r) => {
      f.times.forEach((t, j) => {
        const v = f.values[j];
        if (!(v > 0)) return;
        const a = Math.sqrt(v / (hi || 1));
        g.fillStyle = `rgba(250,100,0,${0.1 + 0.9 * a})`;
        g.fillRect(index.get(t) * colW, h - (r + 1) * rowH, Math.ceil(colW), Math.ceil(rowH));
      });
    });
    const labels = el("div", { class: "heatmap-axis" }, `${frames.length} buckets, le ${frames[0].name} … ${frames[frames.length - 1].name}`);
    box.replaceChildren(canvas, labels);
  }
  // Markdown or HTML text, sanitised: no script, no event handlers, links http(s) only.
  function drawText(panel, box, ctx) {
    const opts = panel.options || {};
    const mode = opts.mode || panel.mode || "markdown";
    const content = ctx.vars.interpolate(opts.content ?? panel.content ?? "");
    const html = mode === "html" ? content : markdown(content);
    const doc = new DOMParser().parseFromString(html, "text/html");
    box.replaceChildren(el("div", { class: "panel-text" }, sanitize(doc.body)));
  }
  const SAFE_TAGS = new Set(["P", "BR", "B", "STRONG", "I", "EM", "U", "A", "UL", "OL", "LI", "H1", "H2", "H3", "H4", "H5", "H6", "CODE", "PRE", "BLOCKQUOTE", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD", "SPAN", "DIV", "HR", "SMALL", "IMG", "CENTER"]);
  function sanitize(node) {
    const frag = document.createDocumentFragment();
    for (const child of node.childNodes) {
      if (child.nodeType === 3) { frag.append(child.textContent); continue; }
      if (child.nodeType !== 1) continue;
      if (!SAFE_TAGS.has(child.tagName)) { if (!["SCRIPT", "STYLE", "IFRAME", "OBJECT", "EMBED"].includes(child.tagName)) frag.append(sanitize(child)); continue; }
      const copy = document.createElement(child.tagName);
      if (child.tagName === "A") {
        const href = child.getAttribute("href") || "";
        if (/^(https?:\/\/|\/|#)/i.test(href)) copy.setAttribute("href", href);
        copy.setAttribute("rel", "noopener noreferrer");
      }
      if (child.tagName === "IMG") {
        const src = child.getAttribute("src") || "";
        if (/^(https?:\/\/|\/)/i.test(src)) copy.setAttribute("src", src);
        copy.setAttribute("alt", child.getAttribute("alt") || "");
      }
      copy.append(sanitize(child));
      frag.append(copy);
    }
    return frag;
  }
  function markdown(text) {
    const esc = s => s.replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
    const inline = s => esc(s).replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>")
      .replace(/\*([^*]+)\*/g, "<i>$1</i>").replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '<a href="$2">$1</a>');
    const out = [];
    let list = false;
    for (const line of String(text).split(/\r?\n/)) {
      const h = line.match(/^(#{1,6})\s+(.*)$/);
      const li = line.match(/^\s*[-*]\s+(.*)$/);
      if (li) { if (!list) { out.push("<ul>"); list = true; } out.push(`<li>${inline(li[1])}</li>`); continue; }
      if (list) { out.push("</ul>"); list = false; }
      if (h) out.push(`<h${h[1].length}>${inline(h[2])}</h${h[1].length}>`);
      else if (line.trim()) out.push(`<p>${inline(line)}</p>`);
    }
    if (list) out.push("</ul>");
    return out.join("");
  }
  function drawLogs(panel, box, logs) {
    if (!logs.length) return message(box, "No data");
    const list = el("div", { class: "panel-logs" });
    for (const hit of logs.slice(0, 500)) {
      const src = hit._source || {};
      let ts = src["@timestamp"] ?? src.timestamp ?? "";
      if (typeof ts === "number" || /^\d{12,}$/.test(String(ts))) ts = new Date(Number(ts)).toISOString();
      const msg = typeof src.message === "string" ? src.message : typeof src.body === "string" ? src.body : JSON.stringify(src);
      const trace = src.trace_id || src.traceId || (src.trace && src.trace.id);
      const line = el("div", { class: "log-line" }, el("span", { class: "ts" }, String(ts)), " ", el("span", { class: "msg" }, msg));
      if (trace) line.append(" ", el("a", { href: "/ui/traces/" + encodeURIComponent(trace), class: "trace-link" }, "trace"));
      list.append(line);
    }
    box.replaceChildren(list);
  }
  function drawTraces(panel, box, traces) {
    if (!traces.length) return message(box, "No data");
    const table = el("table", { class: "grid panel-table" }, el("thead", {}, el("tr", {}, ["Trace", "Root", "Spans", "Duration"].map(h => el("th", {}, h)))));
    const body = el("tbody");
    for (const t of traces.slice(0, 200)) {
      const spans = t.spans || [];
      const root = spans.find(s => !(s.references || []).length) || spans[0] || {};
      const proc = (t.processes || {})[root.processID] || {};
      const start = Math.min(...spans.map(s => s.startTime)), end = Math.max(...spans.map(s => s.startTime + s.duration));
      body.append(el("tr", {}, el("td", {}, el("a", { href: "/ui/traces/" + t.traceID, class: "mono" }, t.traceID)),
        el("td", {}, `${proc.serviceName || ""}: ${root.operationName || ""}`), el("td", { class: "num" }, String(spans.length)),
        el("td", { class: "num" }, formatValue((end - start) / 1000, "ms"))));
    }
    table.append(body);
    box.replaceChildren(el("div", { class: "panel-scroll" }, table));
  }

  // Runs a panel's targets and draws it. Returns {error, requests}.
  async function renderPanel(panel, box, ctx) {
    const type = panel.type || "graph";
    box.dataset.state = "loading";
    if (!SUPPORTED.has(type)) {
      message(box, `The panel type "${type}" is not supported by Oxeye; its queries are not run.`, "unsupported");
      box.dataset.state = "unsupported";
      return;
    }
    if (type === "text") { drawText(panel, box, ctx); box.dataset.state = "drawn"; return; }
    const targets = (panel.targets || []).filter(t => !t.hide);
    if (!targets.length) { message(box, "This panel has no queries."); box.dataset.state = "empty"; return; }
    const fc = fieldConfig(panel);
    const result = { frames: [], exemplars: [], logs: [], traces: [] };
    const problems = [];
    try {
      await Promise.all(targets.map(async t => {
        const src = sourceOf(t.datasource || panel.datasource, ctx.vars);
        if (src.kind === "unsupported") { problems.push(src.why); return; }
        let r;
        if (src.kind === "elasticsearch") r = await runElasticsearch(panel, t, ctx);
        else if (src.kind === "jaeger") r = await runJaeger(panel, t, ctx);
        else {
          if (t.expr === undefined && (t.query !== undefined || t.metrics)) { problems.push("the query is not PromQL (no expr)"); return; }
          r = await runPrometheus(panel, t, ctx);
        }
        result.frames.push(...(r.frames || []));
        result.exemplars.push(...(r.exemplars || []));
        result.logs.push(...(r.logs || []));
        result.traces.push(...(r.traces || []));
      }));
    } catch (e) {
      message(box, "Query failed: " + e.message, "error");
      box.dataset.state = "error";
      box.dataset.error = e.message;
      return;
    }
    if (problems.length && !result.frames.length && !result.logs.length && !result.traces.length) {
      message(box, "Not supported: " + problems.join("; "), "unsupported");
      box.dataset.state = "unsupported";
      return;
    }
    // Frames keep the order of the targets (A, B, …), as in Grafana.
    const order = new Map(targets.map((t, i) => [t.refId, i]));
    result.frames.sort((a, b) => (order.get(a.refId) ?? 99) - (order.get(b.refId) ?? 99));
    try {
      if (type === "timeseries" || type === "graph") drawTimeseries(panel, box, result, fc, ctx);
      else if (type === "stat" || type === "singlestat") drawStat(panel, box, result, fc);
      else if (type === "gauge") drawGauge(panel, box, result, fc);
      else if (type === "bargauge") drawBarGauge(panel, box, result, fc);
      else if (type === "table" || type === "table-old") drawTable(panel, box, result, fc);
      else if (type === "heatmap") drawHeatmap(panel, box, result, fc);
      else if (type === "logs") result.logs.length || !result.frames.length ? drawLogs(panel, box, result.logs) : message(box, "A logs panel needs an Elasticsearch logs query", "unsupported");
      else if (type === "traces" || type === "nodeGraph") drawTraces(panel, box, result.traces);
    } catch (e) {
      message(box, "Cannot draw: " + e.message, "error");
      box.dataset.state = "error";
      box.dataset.error = e.message;
      return;
    }
    const noData = box.querySelector(".panel-msg") !== null;
    box.dataset.state = noData ? "nodata" : "drawn";
    if (problems.length) box.append(el("div", { class: "panel-note" }, "Partly shown: " + problems.join("; ")));
  }

  // ---------------------------------------------------------------- layout
  // Schema < 16 rows → panels with gridPos, as Grafana's migrator does.
  function migrate(dash) {
    if (Array.isArray(dash.panels) && dash.panels.length || !Array.isArray(dash.rows)) return dash.panels || [];
    const panels = [];
    let nextId = 1 + Math.max(0, ...dash.rows.flatMap(r => (r.panels || []).map(p => p.id || 0)));
    const showRows = dash.rows.some(r => r.collapse || r.showTitle || r.repeat);
    const gridHeight = px => Math.ceil(Math.max(parseInt(String(px || 250), 10) || 250, 90) / 38);
    let y = 0;
    for (const row of dash.rows) {
      const rowH = gridHeight(row.height);
      let rowPanel = null;
      if (showRows) {
        rowPanel = { id: nextId++, type: "row", title: row.title, collapsed: !!row.collapse, panels: [], gridPos: { x: 0, y, w: 24, h: 1 } };
        panels.push(rowPanel);
        y++;
      }
      let x = 0, lineY = y, lineH = 0;
      for (const p of row.panels || []) {
        const w = Math.floor(p.span || 4) * 2;
        const h = p.height ? gridHeight(p.height) : rowH;
        if (x + w > 24) { x = 0; lineY += lineH; lineH = 0; }
        const copy = { ...p, gridPos: { x, y: lineY, w, h } };
        delete copy.span;
        if (rowPanel && rowPanel.collapsed) rowPanel.panels.push(copy); else panels.push(copy);
        x += w; lineH = Math.max(lineH, h);
      }
      if (!(rowPanel && rowPanel.collapsed)) y = Math.max(y + rowH, lineY + lineH);
    }
    return panels;
  }
  // Visible panels in grid order with their final positions; panels of
  // collapsed rows stay hidden unless the row is in `expanded`.
  function layout(panels, expanded) {
    const sorted = [...panels].sort((a, b) => ((a.gridPos || {}).y || 0) - ((b.gridPos || {}).y || 0) || ((a.gridPos || {}).x || 0) - ((b.gridPos || {}).x || 0));
    const out = [];
    let shift = 0;
    for (const p of sorted) {
      const g = p.gridPos || { x: 0, y: 0, w: 12, h: 8 };
      const pos = { x: g.x || 0, y: (g.y || 0) + shift, w: g.w || 12, h: g.h || 8 };
      out.push({ panel: p, pos });
      if (p.type === "row" && p.collapsed && expanded.has(p.id)) {
        const children = p.panels || [];
        if (!children.length) continue;
        const firstY = Math.min(...children.map(c => (c.gridPos || {}).y ?? g.y));
        const base = pos.y + 1;
        let yMax = base;
        for (const c of children) {
          const cg = c.gridPos || { x: 0, y: firstY, w: 12, h: 8 };
          const cy = base + ((cg.y ?? firstY) - firstY);
          out.push({ panel: c, pos: { x: cg.x || 0, y: cy, w: cg.w || 12, h: cg.h || 8 }, inRow: p.id });
          yMax = Math.max(yMax, cy + (cg.h || 8));
        }
        shift += yMax - base;
      }
    }
    return out;
  }

  return { el, api, stats, parseTime, roundInterval, intervalToMs, formatInterval, goDuration, formatValue, Variables,
    parseCustom, regexFilter, sortOptions, prometheusOptions, renderPanel, layout, migrate, promTiming, promFormat, FORMATS,
    sampleExemplars, SUPPORTED };
})();

// ==================================================================== pages
(() => {
  const { el, api } = OX;
  const QUICK = [["now-5m", "Last 5 minutes"], ["now-15m", "Last 15 minutes"], ["now-30m", "Last 30 minutes"], ["now-1h", "Last 1 hour"],
    ["now-3h", "Last 3 hours"], ["now-6h", "Last 6 hours"], ["now-12h", "Last 12 hours"], ["now-24h", "Last 24 hours"],
    ["now-2d", "Last 2 days"], ["now-7d", "Last 7 days"], ["now-30d", "Last 30 days"]];
  const REFRESH = ["", "5s", "10s", "30s", "1m", "5m", "15m", "30m", "1h"];

  async function jsonOrError(resp) {
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(body.error || body.message || resp.statusText);
    return body;
  }

  // ------------------------------------------------------------ the list
  async function listPage() {
    const root = document.getElementById("dash-list");
    if (!root) return;
    const search = document.getElementById("dash-search");
    const tbody = root.querySelector("tbody");
    const status = document.getElementById("dash-list-status");
    async function load() {
      const q = search.value.trim();
      const body = await jsonOrError(await fetch("/api/v1/dashboards" + (q ? "?query=" + encodeURIComponent(q) : "")));
      tbody.replaceChildren(...body.data.map(d => el("tr", { "data-uid": d.uid },
        el("td", {}, el("a", { href: "/ui/d/" + encodeURIComponent(d.uid) }, d.title)),
        el("td", {}, d.tags.map(t => el("span", { class: "tag" }, t))),
        el("td", { class: "num" }, String(d.panels)),
        el("td", { class: "num" }, String(d.version)),
        el("td", { class: "nowrap" }, new Date(d.updated).toLocaleString()),
        el("td", { class: "nowrap" },
          el("button", { class: "small", onclick: () => duplicate(d.uid) }, "Duplicate"), " ",
          el("button", { class: "small danger", onclick: () => remove(d) }, "Delete")))));
      status.textContent = body.data.length ? `${body.data.length} dashboard${body.data.length === 1 ? "" : "s"}` : "No dashboards match.";
    }
    async function duplicate(uid) {
      const { dashboard } = await jsonOrError(await fetch("/api/v1/dashboards/" + encodeURIComponent(uid)));
      dashboard.title = dashboard.title + " (copy)";
      delete dashboard.uid; delete dashboard.version; delete dashboard.id;
      const saved = await jsonOrError(await fetch("/api/v1/dashboards", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(dashboard) }));
      location.href = saved.url;
    }
    async function remove(d) {
      if (!confirm(`Delete the dashboard "${d.title}" and its history?`)) return;
      await jsonOrError(await fetch("/api/v1/dashboards/" + encodeURIComponent(d.uid), { method: "DELETE" }));
      load();
    }
    search.addEventListener("input", () => load().catch(e => { status.textContent = e.message; }));
    document.getElementById("dash-new").addEventListener("click", async () => {
      const saved = await jsonOrError(await fetch("/api/v1/dashboards", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ title: "New dashboard", panels: [], time: { from: "now-1h", to: "now" }, schemaVersion: 39 }) }));
      location.href = saved.url + "?edit=1";
    });
    const importBox = document.getElementById("dash-import-text");
    const importStatus = document.getElementById("dash-import-status");
    document.getElementById("dash-import-file").addEventListener("change", async ev => {
      const file = ev.target.files[0];
      if (file) importBox.value = await file.text();
    });
    document.getElementById("dash-import").addEventListener("click", async () => {
      importStatus.className = "status";
      try {
        const saved = await jsonOrError(await fetch("/api/v1/dashboards?overwrite=true", { method: "POST", headers: { "content-type": "application/json" }, body: importBox.value }));
        importStatus.textContent = `Saved as ${saved.uid}, version ${saved.version}.`;
        location.href = saved.url;
      } catch (e) {
        importStatus.textContent = "Not imported: " + e.message;
        importStatus.className = "status error";
      }
    });
    load().catch(e => { status.textContent = e.message; });
  }

  // ------------------------------------------------------------ one dashboard
  async function viewPage() {
    const root = document.getElementById("dash");
    if (!root) return;
    const uid = root.dataset.uid;
    const params = new URLSearchParams(location.search);
    const status = document.getElementById("dash-status");
    const grid = document.getElementById("dash-grid");
    // Saves and restores are reported here (the status line is the loading state).
    const notice = document.getElementById("dash-notice");
    let saved;
    try {
      saved = await jsonOrError(await fetch("/api/v1/dashboards/" + encodeURIComponent(uid)));
    } catch (e) {
      status.textContent = e.message; status.className = "status error";
      return;
    }
    let dash = saved.dashboard;
    let meta = saved.meta;
    const time = { from: params.get("from") || (dash.time && dash.time.from) || "now-6h", to: params.get("to") || (dash.time && dash.time.to) || "now" };
    let refresh = params.get("refresh") ?? (dash.refresh || "");
    const viewPanel = params.get("viewPanel");
    const expanded = new Set();
    // ?rows=open: every collapsed row opened at once (Grafana's "expand all").
    if (params.get("rows") === "open") {
      for (const p of OX.migrate(dash)) if (p.type === "row" && p.collapsed) expanded.add(p.id);
    }
    let vars;
    let generation = 0;

    function range() {
      const now = Date.now();
      return { from: OX.parseTime(time.from, false, now), to: OX.parseTime(time.to, true, now) };
    }
    function syncUrl() {
      const p = new URLSearchParams();
      p.set("from", time.from); p.set("to", time.to);
      if (refresh) p.set("refresh", refresh);
      if (viewPanel) p.set("viewPanel", viewPanel);
      for (const v of vars.list) {
        const s = vars.state.get(v.name);
        if (!s || v.type === "constant" || v.type === "datasource") continue;
        for (const x of Array.isArray(s.value) ? s.value : [s.value]) p.append("var-" + v.name, x === "$__all" ? "All" : x);
      }
      history.replaceState(null, "", location.pathname + "?" + p);
      document.getElementById("dash-export").href = "/api/v1/dashboards/" + encodeURIComponent(uid);
    }

    // ---- header
    document.getElementById("dash-title").textContent = dash.title;
    document.title = dash.title + " · Oxeye";
    document.getElementById("dash-tags").replaceChildren(...(dash.tags || []).map(t => el("span", { class: "tag" }, t)));
    const rangeSel = document.getElementById("dash-range");
    const fromIn = document.getElementById("dash-from"), toIn = document.getElementById("dash-to");
    rangeSel.replaceChildren(el("option", { value: "" }, "Custom"), ...QUICK.map(([v, t]) => el("option", { value: v }, t)));
    const showTime = () => { fromIn.value = time.from; toIn.value = time.to; rangeSel.value = time.to === "now" && QUICK.some(q => q[0] === time.from) ? time.from : ""; };
    showTime();
    rangeSel.addEventListener("change", () => { if (rangeSel.value) { time.from = rangeSel.value; time.to = "now"; showTime(); timeChanged(); } });
    document.getElementById("dash-time-form").addEventListener("submit", ev => {
      ev.preventDefault();
      try { OX.parseTime(fromIn.value, false, Date.now()); OX.parseTime(toIn.value, true, Date.now()); } catch (e) { status.textContent = e.message; status.className = "status error"; return; }
      time.from = fromIn.value.trim(); time.to = toIn.value.trim(); showTime(); timeChanged();
    });
    const refreshSel = document.getElementById("dash-refresh");
    refreshSel.replaceChildren(...REFRESH.map(r => el("option", { value: r }, r || "Off")));
    refreshSel.value = REFRESH.includes(refresh) ? refresh : "";
    let timer = null;
    const arm = () => {
      if (timer) clearInterval(timer);
      const ms = refresh ? OX.intervalToMs(refresh) : 0;
      timer = ms && ms >= 5000 ? setInterval(() => { refreshes++; drawAll(); }, ms) : null;
    };
    refreshSel.addEventListener("change", () => { refresh = refreshSel.value; arm(); syncUrl(); });
    document.getElementById("dash-reload").addEventListener("click", () => { refreshes++; drawAll(); });
    document.getElementById("dash-rows").addEventListener("click", () => {
      const rows = OX.migrate(dash).filter(p => p.type === "row" && p.collapsed);
      const open = rows.length && rows.every(p => expanded.has(p.id));
      for (const p of rows) open ? expanded.delete(p.id) : expanded.add(p.id);
      drawAll({ reuse: true });
    });

    // ---- variables
    async function resolveVariable(v, r) {
      const state = vars.state.get(v.name) || {};
      let options = [];
      switch (v.type) {
        case "custom": options = OX.parseCustom(vars.interpolate(v.query || "")); break;
        case "constant": options = [{ text: String(v.query ?? ""), value: String(v.query ?? "") }]; break;
        case "textbox": {
          const val = state.value ?? (v.current && v.current.value) ?? v.query ?? "";
          vars.state.set(v.name, { value: val, text: val, options: [{ text: val, value: val }] });
          return;
        }
        case "interval": {
          options = String(v.query || "").split(",").map(s => s.trim()).filter(Boolean).map(s => ({ text: s, value: s }));
          if (v.auto) {
            const autoMs = Math.max(OX.roundInterval((r.to - r.from) / (v.auto_count || 30)), OX.intervalToMs(v.auto_min || "10s") || 10000);
            options.unshift({ text: "auto", value: OX.formatInterval(autoMs), auto: true });
          }
          break;
        }
        case "datasource": {
          const kind = String(v.query || "prometheus").toLowerCase();
          const label = kind.includes("elastic") ? "Oxeye (Elasticsearch API)" : kind.includes("jaeger") ? "Oxeye (Jaeger API)" : "Oxeye (Prometheus API)";
          options = [{ text: label, value: "oxeye-" + kind }];
          break;
        }
        case "adhoc": vars.state.set(v.name, { value: [], text: [], options: [], adhoc: true }); return;
        case "query": {
          const src = v.datasource && typeof v.datasource === "object" ? (v.datasource.type || "") : String(v.datasource || "");
          if (/elastic|loki|jaeger|tempo/i.test(src) && !/prometheus/i.test(src)) throw new Error(`variable $${v.name}: queries to the ${src} data source are not supported`);
          const q = typeof v.query === "string" ? v.query : (v.query && v.query.query) || "";
          const scoped = { __interval: "15s", __interval_ms: 15000, __range_ms: r.to - r.from, __range_s: Math.round((r.to - r.from) / 1000), __range: Math.round((r.to - r.from) / 1000) + "s" };
          const text = vars.interpolate(q, OX.promFormat, scoped);
          // refresh 1 (on load) uses Grafana's default range, the last 6 hours.
          const qr = v.refresh === 1 ? { from: Date.now() - 6 * 3600000, to: Date.now() } : r;
          options = await OX.prometheusOptions(text, qr);
          options = OX.regexFilter(options, vars.interpolate(v.regex || "", OX.FORMATS.regex));
          const seen = new Set();
          options = OX.sortOptions(options.filter(o => !seen.has(o.value) && seen.add(o.value)), v.sort || 0);
          break;
        }
        default: throw new Error(`variable $${v.name}: the type ${v.type} is not supported`);
      }
      if (v.includeAll) options = [{ text: "All", value: "$__all" }, ...options];
      // Keep the current value when it is still an option (or came from the URL).
      const fromUrl = params.getAll("var-" + v.name).map(x => (x === "All" ? "$__all" : x));
      let value = state.value;
      if (value === undefined && fromUrl.length) value = v.multi ? fromUrl : fromUrl[0];
      if (value === undefined && v.current && v.current.value !== undefined) value = v.current.value;
      const values = new Set(options.map(o => o.value));
      const isAll = x => x === "$__all" || (Array.isArray(x) && x.includes("$__all"));
      if (isAll(value) && v.includeAll) value = v.multi ? ["$__all"] : "$__all";
      else if (v.multi) {
        let list = (Array.isArray(value) ? value : value === undefined ? [] : [value]).filter(x => values.has(x) || (state.fromUrl && fromUrl.includes(x)));
        if (!list.length) list = options.length ? [options[0].value] : [];
        value = list;
      } else if (Array.isArray(value)) value = values.has(value[0]) ? value[0] : (options[0] || {}).value ?? "";
      else if (!values.has(value)) {
        const byText = options.find(o => v.current && o.text === v.current.text);
        value = byText ? byText.value : (options[0] || {}).value ?? "";
      }
      if (v.type === "interval" && v.auto && (value === "auto" || value === "$__auto" || String(value).startsWith("$__auto_interval"))) value = options[0].value;
      const text = Array.isArray(value) ? value.map(x => (options.find(o => o.value === x) || { text: x }).text) : (options.find(o => o.value === value) || { text: value }).text;
      vars.state.set(v.name, { value, text, options });
    }
    // Variables that `name` feeds, directly or not.
    function dependents(name) {
      const out = new Set([name]);
      let grew = true;
      while (grew) {
        grew = false;
        for (const v of vars.list) {
          if (out.has(v.name)) continue;
          const q = typeof v.query === "string" ? v.query : (v.query && v.query.query) || "";
          const refs = new Set([...OX.Variables.refs(q), ...OX.Variables.refs(v.regex || ""), ...OX.Variables.refs(JSON.stringify(v.datasource || ""))]);
          if ([...refs].some(r => out.has(r))) { out.add(v.name); grew = true; }
        }
      }
      return out;
    }
    const varErrors = new Map();
    async function resolveAll(only) {
      const r = range();
      for (const v of vars.list) {
        if (only && !only.has(v.name)) continue;
        try { await resolveVariable(v, r); varErrors.delete(v.name); } catch (e) {
          varErrors.set(v.name, e.message);
          vars.state.set(v.name, { value: v.multi ? [] : "", text: "", options: [] });
        }
      }
    }
    function drawVariables() {
      const box = document.getElementById("dash-vars");
      box.replaceChildren();
      for (const v of vars.list) {
        if (v.hide === 2) continue;
        const s = vars.state.get(v.name) || { options: [] };
        const label = el("label", { class: "var" }, v.hide === 1 ? "" : el("span", {}, v.label || v.name));
        let input;
        if (v.type === "textbox") {
          input = el("input", { value: s.value ?? "", name: "var-" + v.name });
          input.addEventListener("change", () => changed(v, input.value));
        } else if (v.type === "adhoc") {
          input = el("span", { class: "hint" }, "ad hoc filters are not supported");
        } else {
          input = el("select", { name: "var-" + v.name, multiple: v.multi ? true : undefined });
          const chosen = new Set(Array.isArray(s.value) ? s.value : [s.value]);
          for (const o of s.options) input.append(el("option", { value: o.value, selected: chosen.has(o.value) ? true : undefined }, o.text));
          if (v.multi) input.size = Math.min(6, Math.max(2, s.options.length));
          input.addEventListener("change", () => {
            const picked = [...input.selectedOptions].map(o => o.value);
            changed(v, v.multi ? (picked.includes("$__all") ? ["$__all"] : picked) : picked[0]);
          });
        }
        label.append(input);
        if (varErrors.has(v.name)) label.append(el("span", { class: "var-error", title: varErrors.get(v.name) }, "⚠ " + varErrors.get(v.name)));
        box.append(label);
      }
    }
    async function changed(v, value) {
      const s = vars.state.get(v.name);
      s.value = value;
      const after = dependents(v.name);
      after.delete(v.name);
      await resolveAll(after);
      drawVariables();
      syncUrl();
      drawAll();
    }
    async function timeChanged() {
      const refreshOnTime = new Set(vars.list.filter(v => v.refresh === 2 || v.type === "interval").map(v => v.name));
      const all = new Set();
      for (const n of refreshOnTime) for (const d of dependents(n)) all.add(d);
      await resolveAll(all);
      drawVariables();
      syncUrl();
      drawAll();
    }

    // ---- panels
    function panelTitle(p) { return vars.interpolate(p.title || ""); }
    function exploreLink(p) {
      const t = (p.targets || []).find(t => !t.hide && t.expr);
      if (!t) return null;
      const r = range();
      const timing = OX.promTiming(p, t, { range: r, vars, width: 800 });
      const expr = vars.interpolate(t.expr, OX.promFormat, timing.macros);
      const span = (r.to - r.from) / 1000;
      const named = span <= 900 ? "15m" : span <= 3600 ? "1h" : span <= 21600 ? "6h" : span <= 86400 ? "24h" : "7d";
      return "/ui/metrics?query=" + encodeURIComponent(expr) + "&range=" + named;
    }
    // Panels drawn for the current time range and variable values, kept
    // while rows open and close; anything else draws afresh.
    const drawn = new Map();
    let dataKey = "";
    // Bumped by the refresh button and timer: everything is queried again.
    let refreshes = 0;
    function drawAll(opts) {
      const gen = ++generation;
      const r = range();
      const key = JSON.stringify([time.from, time.to, refreshes, [...vars.state].map(([n, s]) => [n, s.value])]);
      if (!(opts && opts.reuse) || key !== dataKey) drawn.clear();
      dataKey = key;
      const panels = OX.migrate(dash);
      let items = OX.layout(panels, expanded);
      if (viewPanel) items = items.filter(i => String(i.panel.id) === viewPanel).map(i => ({ ...i, pos: { x: 0, y: 0, w: 24, h: 20 } }));
      grid.replaceChildren();
      const jobs = [];
      for (const item of items) {
        const p = item.panel;
        const style = `grid-column:${item.pos.x + 1} / span ${Math.min(item.pos.w, 24 - item.pos.x)};grid-row:${item.pos.y + 1} / span ${item.pos.h}`;
        if (p.type === "row") {
          const open = !p.collapsed || expanded.has(p.id);
          const head = el("div", { class: "dash-row" + (open ? " open" : ""), style, "data-id": p.id, role: "button", tabindex: "0" },
            el("span", { class: "caret" }, p.collapsed ? (open ? "▾" : "▸") : "▾"), " ", panelTitle(p),
            p.collapsed && !open ? el("span", { class: "hint" }, ` (${(p.panels || []).length} panels)`) : null);
          if (p.collapsed) head.addEventListener("click", () => { expanded.has(p.id) ? expanded.delete(p.id) : expanded.add(p.id); drawAll({ reuse: true }); });
          grid.append(head);
          continue;
        }
        const kept = drawn.get(p.id);
        if (kept && kept.width === item.pos.w) {
          kept.section.setAttribute("style", style);
          grid.append(kept.section);
          continue;
        }
        const body = el("div", { class: "panel-body" });
        const menu = el("span", { class: "panel-menu" });
        const explore = exploreLink(p);
        if (explore) menu.append(el("a", { href: explore, title: "Explore this query" }, "Explore"));
        const view = new URLSearchParams(location.search);
        if (viewPanel) view.delete("viewPanel"); else view.set("viewPanel", p.id);
        menu.append(el("a", { href: location.pathname + "?" + view, title: viewPanel ? "Back to the dashboard" : "View this panel full-screen" }, viewPanel ? "Back" : "View"));
        if (meta.canEdit !== false) menu.append(el("a", { href: "#", onclick: ev => { ev.preventDefault(); editPanel(p); } }, "Edit"));
        const section = el("section", { class: "panel", style, "data-id": p.id, "data-type": p.type || "graph" },
          el("header", { class: "panel-head" }, el("span", { class: "panel-title", title: p.description || "" }, panelTitle(p)), menu), body);
        const notes = [];
        if (p.repeat) notes.push(`repeating by $${p.repeat} is not supported: shown once`);
        if (Array.isArray(p.transformations) && p.transformations.some(t => !t.disabled)) {
          notes.push(`transformations (${p.transformations.filter(t => !t.disabled).map(t => t.id).join(", ")}) are not applied`);
        }
        if (p.libraryPanel) notes.push("library panels are not resolved: the saved panel is drawn");
        if (notes.length) section.append(el("div", { class: "panel-note", title: notes.join("; ") }, "Not as in Grafana: " + notes.join("; ")));
        grid.append(section);
        drawn.set(p.id, { section, width: item.pos.w });
        jobs.push({ p, body, visible: item.pos.y < 40 });
      }
      // Panels near the top first; all are drawn (none waits for a scroll).
      jobs.sort((a, b) => Number(b.visible) - Number(a.visible));
      const started = performance.now();
      status.textContent = "Loading…"; status.className = "status";
      Promise.all(jobs.map(j => OX.renderPanel(j.p, j.body, {
        range: r, vars, width: Math.max(100, j.body.clientWidth),
      }))).then(() => {
        if (gen !== generation) return;
        const ms = Math.round(performance.now() - started);
        const counts = {};
        const bodies = grid.querySelectorAll(".panel-body");
        for (const b of bodies) counts[b.dataset.state] = (counts[b.dataset.state] || 0) + 1;
        const parts = Object.entries(counts).map(([k, n]) => `${n} ${k}`);
        status.textContent = `${bodies.length} panels (${parts.join(", ")}); ${jobs.length} drawn in ${ms} ms; ${OX.stats.requests} data requests since the page opened.`;
        root.dataset.rendered = String(gen);
        root.dataset.renderMs = String(ms);
      });
    }

    // ---- editing: the whole JSON model, one panel, a new panel; versions
    const dialog = document.getElementById("dash-dialog");
    const dialogText = document.getElementById("dash-dialog-text");
    const dialogTitle = document.getElementById("dash-dialog-title");
    const dialogStatus = document.getElementById("dash-dialog-status");
    let onApply = null;
    function openEditor(title, value, apply) {
      dialogTitle.textContent = title;
      dialogText.value = JSON.stringify(value, null, 2);
      dialogStatus.textContent = ""; dialogStatus.className = "status";
      onApply = apply;
      dialog.showModal();
    }
    document.getElementById("dash-dialog-apply").addEventListener("click", async ev => {
      ev.preventDefault();
      let value;
      try { value = JSON.parse(dialogText.value); } catch (e) { dialogStatus.textContent = "Not JSON: " + e.message; dialogStatus.className = "status error"; return; }
      try { await onApply(value); dialog.close(); } catch (e) { dialogStatus.textContent = e.message; dialogStatus.className = "status error"; }
    });
    document.getElementById("dash-dialog-cancel").addEventListener("click", ev => { ev.preventDefault(); dialog.close(); });
    async function save(next, message) {
      const body = JSON.stringify({ dashboard: next, message: message || "" });
      const result = await jsonOrError(await fetch("/api/v1/dashboards/" + encodeURIComponent(uid), { method: "PUT", headers: { "content-type": "application/json" }, body }));
      notice.textContent = `Saved version ${result.version}.`;
      await reload();
    }
    // The stored dashboard read back and drawn again (after a save or a restore).
    async function reload() {
      const fresh = await jsonOrError(await fetch("/api/v1/dashboards/" + encodeURIComponent(uid)));
      dash = fresh.dashboard; meta = fresh.meta;
      document.getElementById("dash-title").textContent = dash.title;
      vars = new OX.Variables((dash.templating && dash.templating.list) || [], params);
      await resolveAll();
      drawVariables();
      drawAll();
    }
    document.getElementById("dash-edit").addEventListener("click", () => openEditor("Dashboard JSON", dash, next => save(next, "edited in the browser")));
    function editPanel(p) {
      openEditor(`Panel ${p.id}: ${p.title || ""}`, p, next => {
        const copy = JSON.parse(JSON.stringify(dash));
        const replace = list => list.map(x => (x.id === p.id ? next : x.type === "row" && x.panels ? { ...x, panels: replace(x.panels) } : x));
        copy.panels = replace(copy.panels || []);
        return save(copy, `panel ${p.id} edited`);
      });
    }
    document.getElementById("dash-add").addEventListener("click", () => {
      const all = OX.migrate(dash).flatMap(p => [p, ...(p.panels || [])]);
      const id = 1 + Math.max(0, ...all.map(p => p.id || 0));
      const bottom = Math.max(0, ...OX.migrate(dash).map(p => ((p.gridPos || {}).y || 0) + ((p.gridPos || {}).h || 0)));
      const panel = { id, type: "timeseries", title: "New panel", gridPos: { x: 0, y: bottom, w: 12, h: 8 },
        datasource: { type: "prometheus" }, fieldConfig: { defaults: { unit: "short" }, overrides: [] },
        targets: [{ refId: "A", expr: "up", legendFormat: "{{job}} {{instance}}" }] };
      openEditor("New panel", panel, next => save({ ...dash, panels: [...OX.migrate(dash), next] }, "panel added"));
    });
    document.getElementById("dash-versions").addEventListener("click", async () => {
      const box = document.getElementById("dash-history");
      if (!box.hidden) { box.hidden = true; return; }
      const body = await jsonOrError(await fetch(`/api/v1/dashboards/${encodeURIComponent(uid)}/versions`));
      box.replaceChildren(el("h2", {}, "Versions"), el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, ["Version", "Saved", "Message", ""].map(h => el("th", {}, h)))),
        el("tbody", {}, body.data.map(v => el("tr", { "data-version": v.version },
          el("td", { class: "num" }, String(v.version)), el("td", {}, new Date(v.saved_at).toLocaleString()), el("td", {}, v.message || ""),
          el("td", {}, v.version === meta.version ? "current" : el("button", { class: "small", onclick: async () => {
            const r = await jsonOrError(await fetch(`/api/v1/dashboards/${encodeURIComponent(uid)}/versions/${v.version}/restore`, { method: "POST" }));
            box.hidden = true;
            notice.textContent = `Version ${v.version} restored as version ${r.version}.`;
            await reload();
          } }, "Restore")))))));
      box.hidden = false;
    });

    vars = new OX.Variables((dash.templating && dash.templating.list) || [], params);
    await resolveAll();
    drawVariables();
    syncUrl();
    arm();
    drawAll();
    if (params.get("edit") === "1") document.getElementById("dash-edit").click();
    // Redrawn when the grid's width changes (not its height: a taller
    // window, or a full-page screenshot, changes no panel).
    let resizeTimer = null;
    let drawnWidth = grid.clientWidth;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (Math.abs(grid.clientWidth - drawnWidth) < 16) return;
        drawnWidth = grid.clientWidth;
        drawAll();
      }, 300);
    });
  }

  document.addEventListener("DOMContentLoaded", () => { listPage(); viewPage(); });
})();

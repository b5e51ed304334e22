// Grafana's semantics in web/static/dashboards.js, checked without a
// browser: step and interval macros, variable formats and escapes, units,
// reducers, time expressions, the old-rows migration and row expansion.
// Expected values follow Grafana's source (rangeutil.ts, promlib's
// query.go, formatRegistry.ts, valueFormats) as worked out by hand.
import { readFileSync } from "node:fs";
import vm from "node:vm";
import assert from "node:assert/strict";

const source = readFileSync(new URL("../../web/static/dashboards.js", import.meta.url), "utf8");
const context = vm.createContext({ document: { addEventListener() {} }, console, URLSearchParams, Intl, performance });
vm.runInContext(source, context);
const OX = vm.runInContext("OX", context);
let n = 0;
// Values from the script's realm compared as JSON (their prototypes differ).
const eq = (got, want, what) => { assert.deepEqual(JSON.parse(JSON.stringify(got)), want, what); n++; };

// Step and macros (promlib: step = max(roundInterval(range/maxDataPoints), min interval, range/11000)).
const vars = new OX.Variables([], new URLSearchParams());
const hour = { from: 0, to: 3600000 };
let t = OX.promTiming({}, {}, { range: hour, vars, width: 1000 });
eq([t.step, t.macros.__interval, t.macros.__rate_interval, t.macros.__range], [15000, "15s", "1m0s", "3600s"], "1h over 1000 px");
t = OX.promTiming({}, {}, { range: { from: 0, to: 86400000 }, vars, width: 1000 });
eq([t.step, t.macros.__interval, t.macros.__rate_interval], [60000, "1m", "1m15s"], "24h over 1000 px");
t = OX.promTiming({}, { interval: "45s" }, { range: hour, vars, width: 1000 });
eq(t.step, 45000, "a target min step is kept unrounded");
t = OX.promTiming({}, { interval: "$__rate_interval" }, { range: hour, vars, width: 1000 });
eq(t.step, 60000, "interval $__rate_interval: step = max(interval + scrape, 4 × scrape)");
t = OX.promTiming({ maxDataPoints: 100 }, { intervalFactor: 2 }, { range: hour, vars, width: 1000 });
eq(t.step, 60000, "maxDataPoints 100 (36 s → 30 s) and intervalFactor 2");
t = OX.promTiming({}, {}, { range: { from: 0, to: 30 * 86400000 }, vars, width: 100000 });
eq(t.step, 300000, "the 11000-point safety limit");
eq([OX.formatInterval(90000), OX.formatInterval(500), OX.goDuration(75000), OX.goDuration(14400000)], ["1m", "500ms", "1m15s", "4h0m0s"], "interval text");
eq([OX.roundInterval(3600), OX.roundInterval(86400), OX.intervalToMs("2m"), OX.intervalToMs("30")], [5000, 60000, 120000, 30000], "roundInterval and intervalToMs");

// Variables: the Prometheus data source's escapes and Grafana's formats.
const list = [
  { name: "job", type: "custom", multi: true, includeAll: true },
  { name: "one", type: "custom" },
  { name: "any", type: "custom", includeAll: true, allValue: ".*" },
];
const v = new OX.Variables(list, new URLSearchParams());
v.state.set("job", { value: ["a.b", "c"], text: ["a.b", "c"], options: [{ value: "$__all" }, { value: "a.b" }, { value: "c" }, { value: "d" }] });
v.state.set("one", { value: "it's\\x", text: "it's\\x", options: [] });
v.state.set("any", { value: "$__all", text: "All", options: [{ value: "$__all" }, { value: "x" }] });
eq(v.interpolate('up{job=~"$job"}', OX.promFormat), 'up{job=~"(a\\\\.b|c)"}', "multi → (a|b) with PromQL-string regex escapes");
eq(v.interpolate('up{x="$one"}', OX.promFormat), 'up{x="it\\\\\'s\\\\x"}', "single value: \\ and ' escaped");
eq(v.interpolate('up{x=~"$any"}', OX.promFormat), 'up{x=~".*"}', "All with allValue: raw");
eq(v.interpolate("${job:csv} ${job:pipe} ${job:regex} [[job]] ${job} $job"), "a.b,c a.b|c (a\\.b|c) {a.b,c} {a.b,c} {a.b,c}", "formats; glob by default");
eq(v.interpolate("${job:json} ${job:lucene} ${job:queryparam} ${job:singlequote}"), '["a.b","c"] ("a.b" OR "c") var-job=a.b&var-job=c \'a.b\',\'c\'', "more formats");
eq(v.interpolate("${job:text} ${any:text} $nope ${__interval}", null, { __interval: "1m" }), "a.b + c All $nope 1m", "text, unknown names kept, scoped macros");
v.state.set("job", { value: ["$__all"], text: ["All"], options: [{ value: "$__all" }, { value: "a" }, { value: "b" }] });
eq(v.interpolate('{job=~"$job"}', OX.promFormat), '{job=~"(a|b)"}', "All without allValue: every option");

eq(OX.parseCustom("prod : p1, dev,a\\,b"), [{ text: "prod", value: "p1" }, { text: "dev", value: "dev" }, { text: "a,b", value: "a,b" }], "custom values");
eq(OX.regexFilter([{ text: "x", value: "host-12:9100" }, { text: "y", value: "other" }], "/host-(\\d+)/"), [{ text: "12", value: "12" }], "regex capture group");
eq(OX.regexFilter([{ text: "x", value: "a=1" }], "/(?<text>\\w)=(?<value>\\d)/"), [{ text: "a", value: "1" }], "named groups");
eq(OX.regexFilter([{ text: "x", value: "abc" }, { text: "y", value: "zabc" }], "abc"), [{ text: "x", value: "abc" }], "a bare regex is anchored");
eq(OX.sortOptions([{ text: "n10" }, { text: "n9" }, { text: "x" }], 3).map(o => o.text), ["x", "n9", "n10"], "numeric sort");

// Units and decimals.
const f = OX.formatValue;
eq([f(1536, "bytes"), f(1e9, "decbytes"), f(0.1234, "percentunit"), f(42.5, "percent")], ["1.50 KiB", "1 GB", "12.3%", "42.5%"], "bytes and percents");
eq([f(3600, "s"), f(90, "s"), f(0.0005, "s"), f(1500, "ms")], ["1 hour", "1.50 min", "500 µs", "1.50 s"], "durations");
eq([f(1500000, "short"), f(12, "short"), f(2500, "reqps"), f(1e6, "bps"), f(1, "bool_yes_no"), f(3, "celsius")], ["1.50 Mil", "12", "2.50K req/s", "1 Mb/s", "Yes", "3 °C"], "short, rates, bool");
eq([f(1234.5678, "none", 2), f(0, "bytes"), f(null, "short"), f(7, "suffix:pods")], ["1234.57", "0 B", "No data", "7 pods"], "decimals, zero, null, custom suffix");
eq([f(3725, "dtdurations", 1)], ["1 hour, 2 minutes"], "dtdurations");

// Time expressions.
const now = Date.UTC(2026, 5, 15, 13, 45, 30);
eq(OX.parseTime("now-6h", false, now), now - 6 * 3600000, "now-6h");
eq(OX.parseTime("1700000000000", false, now), 1700000000000, "epoch ms");
const endOfDay = new Date(now); endOfDay.setHours(23, 59, 59, 999);
eq(OX.parseTime("now/d", true, now), endOfDay.getTime(), "now/d as `to` is the end of today");
assert.throws(() => OX.parseTime("yesterday-ish", false, now)); n++;

// Old rows → panels; a collapsed row pushes what follows down when opened.
const old = OX.migrate({ rows: [{ title: "A", height: "250px", panels: [{ id: 1, span: 6 }, { id: 2, span: 6 }, { id: 3, span: 12, height: 100 }] }] });
eq(old.map(p => [p.id, p.gridPos]), [[1, { x: 0, y: 0, w: 12, h: 7 }], [2, { x: 12, y: 0, w: 12, h: 7 }], [3, { x: 0, y: 7, w: 24, h: 3 }]], "rows of spans become a grid");
const panels = [
  { id: 10, type: "row", collapsed: true, gridPos: { x: 0, y: 0, w: 24, h: 1 }, panels: [{ id: 11, gridPos: { x: 0, y: 5, w: 12, h: 8 } }] },
  { id: 20, type: "stat", gridPos: { x: 0, y: 1, w: 6, h: 4 } },
];
eq(OX.layout(panels, new Set()).map(i => [i.panel.id, i.pos.y]), [[10, 0], [20, 1]], "collapsed: children hidden");
eq(OX.layout(panels, new Set([10])).map(i => [i.panel.id, i.pos.y]), [[10, 0], [11, 1], [20, 9]], "expanded: children under the row, the rest pushed down");

// Exemplar sampling: per step the largest, plus any far below it.
const ex = OX.sampleExemplars([{ seriesLabels: { a: "1" }, exemplars: [
  { timestamp: 10, value: "5", labels: { trace_id: "t1" } }, { timestamp: 11, value: "4.9", labels: { trace_id: "t2" } },
  { timestamp: 100, value: "1", labels: { trace_id: "t3" } }] }], 60000);
eq(ex.map(e => e.labels.trace_id), ["t1", "t3"], "one exemplar per step bucket unless far apart");
console.log(`dashboards unit ok (${n} checks)`);

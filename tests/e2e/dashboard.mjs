// Oxeye dashboard end to end, in Debian's headless Chromium driven by
// playwright-core. Run by tests/dashboard.rs after it loaded data with the
// real clients: BASE_URL, TRACE_ID and SHOTS (screenshot directory) come
// from the environment. Every page is opened, used and checked; any console
// error or failed request fails the run. Bounded: every wait has a timeout.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const traceId = process.env.TRACE_ID;
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
page.setDefaultTimeout(15000);
const problems = [];
page.on("console", m => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
page.on("pageerror", e => problems.push(`page error: ${e.message}`));
page.on("requestfailed", r => {
  // A live-tail EventSource is aborted on purpose when the page changes.
  if (!r.url().includes("/api/v1/logs/tail")) problems.push(`request failed: ${r.url()} (${r.failure() && r.failure().errorText}) on ${page.url()}`);
});
page.on("response", r => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}
async function text(selector) {
  return (await page.locator(selector).first().innerText()).trim();
}

// Overview.
await page.goto(`${base}/`);
check((await text("h1")) === "Overview", "overview heading");
check(await page.locator("#rates tbody tr").count() >= 3, "overview lists arriving signals");
check((await text("#storage")).includes("Traces"), "overview shows storage per signal");
await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

// Metrics explorer: completion, a query, graph and table, URL state.
await page.goto(`${base}/ui/metrics`);
await page.fill("#promql", "traces_span_metrics_calls_");
await page.waitForFunction(() => document.querySelectorAll("#metric-names option").length > 0);
check((await page.locator("#metric-names option").first().getAttribute("value")).startsWith("traces_span_metrics_calls_total"), "metric name completion");
await page.fill("#promql", 'sum by (service_name) (traces_span_metrics_calls_total)');
await page.click("#metrics-form button");
await page.waitForURL(/query=/);
await page.waitForSelector("#graph .uplot");
check(page.url().includes("range=1h"), "query and range live in the URL");
const rows = await page.locator("#metrics-table tbody tr").count();
check(rows >= 2, `table shows one row per service (${rows})`);
check((await text("#metrics-table")).includes('service_name="api"'), "table names the series");
await page.screenshot({ path: `${shots}/metrics.png`, fullPage: true });

// Logs: query, expand a record, follow trace_id to the trace.
await page.goto(`${base}/ui/logs?query=${encodeURIComponent("severity_text:ERROR")}&range=1h`);
check((await text("#logs-summary")).startsWith("1 records match"), "log query narrows to the error record");
check(await page.locator("#volume rect").count() > 10, "volume histogram drawn");
await page.click("#log-rows details.log summary");
check(await page.locator("#log-rows details.log table.fields").isVisible(), "record expands to its fields");
check((await text("#log-rows details.log")).includes("payment failed"), "record shows its message");
await page.screenshot({ path: `${shots}/logs.png`, fullPage: true });
await page.click("#log-rows a.trace-link");
await page.waitForSelector("#waterfall");
check(page.url().includes("/ui/traces/"), "trace_id links to its trace");

// Live tail: a record written now appears without reloading.
await page.goto(`${base}/ui/logs`);
await page.check("#live-tail");
await page.waitForTimeout(300);
const now = new Date().toISOString();
const bulk = `{"index":{"_index":"tail-e2e"}}\n${JSON.stringify({ "@timestamp": now, message: "tailed in the browser", level: "warn" })}\n`;
const response = await fetch(`${process.env.ES_URL}/_bulk`, { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: bulk });
check(response.ok, "bulk write for the tail");
await page.waitForSelector("#tail-rows details.log");
check((await text("#tail-rows")).includes("tailed in the browser"), "live tail shows the new record");
await page.uncheck("#live-tail");

// Traces: search, open a trace, waterfall, span details, logs of the trace.
await page.goto(`${base}/ui/traces`);
await page.selectOption("#service", "api");
await page.click("#traces-form button");
await page.waitForSelector("#trace-results");
check(await page.locator("#trace-results tbody tr").count() === 1, "search finds the api trace");
await page.screenshot({ path: `${shots}/traces.png`, fullPage: true });
await page.click("#trace-results tbody tr a");
await page.waitForSelector("#waterfall");
check(await page.locator("#waterfall details.span").count() === 7, "waterfall shows the 7 spans");
check(await page.locator("#waterfall details.span.err").count() === 1, "the failing span is marked");
await page.click("#waterfall details.span.err summary");
check((await text("#waterfall details.span.err")).includes("exception"), "span details show the exception event");
await page.screenshot({ path: `${shots}/trace.png`, fullPage: true });
await page.goto(`${base}/ui/traces/${traceId}`);
await page.click("#trace-logs");
await page.waitForSelector("#logs-summary");
check(page.url().includes("trace_id"), "trace links to its logs");

// Service map.
await page.goto(`${base}/ui/services`);
check(await page.locator("#service-map .node").count() >= 2, "service map draws services");
check((await text("#edges")).includes("frontend"), "edges table lists frontend → api");
await page.screenshot({ path: `${shots}/services.png`, fullPage: true });

// Status.
await page.goto(`${base}/ui/status`);
check((await text("#build")).includes("version"), "status shows build info");
check((await text("#config")).includes("max_body_size"), "status shows the configuration");
await page.screenshot({ path: `${shots}/status.png`, fullPage: true });

// Alerts and rules.
await page.goto(`${base}/ui/alerts`);
check((await text("#alert-counts")).includes("1 firing"), "alerts page counts the firing alert");
check((await text("#rule-AlwaysFiring")).includes("the demo alert fires"), "alerts page shows annotations");
check((await text("#rule-AlwaysFiring")).includes("inactive → pending"), "alerts page shows state history");
check(
  (await page.locator("#rule-ErrorLogs a.mono").getAttribute("href")).startsWith("/ui/logs?query=severity_text"),
  "a log rule links to the logs page",
);
await page.screenshot({ path: `${shots}/alerts.png`, fullPage: true });
await page.goto(`${base}/ui/rules`);
check((await text("table.rules")).includes("AlwaysFiring"), "rules page lists rules");
check((await page.locator("tr.health-err").count()) === 1, "rules page shows the failing rule");
await page.screenshot({ path: `${shots}/rules.png`, fullPage: true });

// Recommendations: the table, then one workload's charts and HPA replay.
await page.goto(`${base}/ui/recommendations?window=7d&time=${process.env.REC_TIME}`);
const recTable = await text("#rec-table");
check(recTable.includes("steady") && recTable.includes("1Gi → 575Mi"), "recommendations table shows today's and the recommended memory");
check((await page.locator("#rec-table tbody tr.sev-CRITICAL").count()) >= 1, "recommendations are ranked by severity");
check((await text("#rec-namespaces")).includes("shop"), "namespace quota suggestions are shown");
check((await text("#rec-nodes")).includes("4 CPU"), "node shapes are bin packed");
await page.locator("#rec-table a", { hasText: "web" }).first().click();
await page.waitForURL(/show=/);
await page.waitForSelector("#rec-charts .uplot");
check(await page.locator("#rec-charts .uplot").count() === 3, "usage, memory and replica charts are drawn");
check((await text("#hpa-reason")).includes("demand varies"), "the HPA advice says why");
await page.screenshot({ path: `${shots}/recommendations.png`, fullPage: true });

// Database advice: the trace's database calls as templates.
await page.goto(`${base}/ui/recommendations/database?range=1h`);
check((await text("#db-templates")).includes("SELECT * FROM orders"), "database page lists query templates");
check((await text("#redis-patterns")).includes("cart:?"), "database page shows Redis key patterns");
check((await text("#cache-candidates")).includes("FROM products WHERE id = ?"), "database page lists cache candidates");
await page.waitForSelector("#cache-curve .uplot");
check(true, "the hit-ratio curve is drawn");
await page.screenshot({ path: `${shots}/database.png`, fullPage: true });

// SQL: a result table, and a chart for a time-bucketed answer.
const sql = "SELECT date_bin(INTERVAL '1 second', start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS t, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 1";
await page.goto(`${base}/ui/sql?query=${encodeURIComponent(sql)}`);
await page.waitForSelector("#sql-table tbody tr");
check((await text("#sql-table thead")).includes("spans"), "SQL page names the columns");
check(/\d+ rows? in \d+ ms/.test(await text("#sql-status")), "SQL page reports rows and time");
await page.waitForSelector("#sql-graph .uplot");
check(true, "SQL page charts the time column");
await page.screenshot({ path: `${shots}/sql.png`, fullPage: true });

// Dashboards: the list, the provisioned RED dashboard with the span
// metrics, an exemplar on the latency panel that opens its trace, the
// trace's links back to the logs and the RED dashboard; edit → save →
// reload → the same; a version restored.
await page.goto(`${base}/ui/dashboards`);
await page.waitForSelector('#dash-list tr[data-uid="oxeye-red"]');
check(await page.locator("#dash-list tbody tr").count() >= 3, "the provisioned dashboards are listed");
await page.screenshot({ path: `${shots}/dashboards.png`, fullPage: true });
// Rates need two span-metric writes before the last 15 s step boundary.
await page.waitForFunction(async () => {
  const at = Math.floor(Date.now() / 15000) * 15;
  const q = encodeURIComponent("sum(rate(traces_span_metrics_calls_total[1m]))");
  const body = await (await fetch(`/api/v1/query?query=${q}&time=${at}`)).json();
  return body.data.result.length > 0;
}, null, { timeout: 45000, polling: 1000 });
await page.goto(`${base}/ui/d/oxeye-red?from=now-15m&to=now`);
await page.waitForFunction(() => Number(document.getElementById("dash").dataset.rendered || 0) >= 1, null, { timeout: 30000 });
const redStates = await page.$$eval(".panel-body", els => els.map(e => e.dataset.state));
check(redStates.length === 6 && !redStates.includes("error"), `RED dashboard panels drawn without errors (${redStates})`);
check(redStates.filter(s => s === "drawn").length >= 4, `RED dashboard shows the span metrics (${redStates})`);
const services = await page.$$eval('#dash-vars select[name="var-service"] option', os => os.map(o => o.value));
check(services.includes("api"), `the service variable lists the services (${services})`);
await page.screenshot({ path: `${shots}/dashboard-red.png`, fullPage: true });
const spot = await page.evaluate(() => {
  const body = [...document.querySelectorAll(".panel-body")].find(b => b.oxExemplars && b.oxExemplars.length);
  if (!body) return null;
  body.scrollIntoView();
  const u = body.oxPlot;
  const box = u.over.getBoundingClientRect();
  // One inside the plot area (the newest may lie past the last step).
  const e = body.oxExemplars.find(x => {
    const px = u.valToPos(x.t, "x"), py = u.valToPos(x.v, "y");
    return px >= 0 && px <= box.width && py >= 0 && py <= box.height;
  });
  if (!e) return { none: body.oxExemplars.length };
  return { x: box.left + u.valToPos(e.t, "x"), y: box.top + u.valToPos(e.v, "y"), trace: e.labels.trace_id };
});
check(spot !== null && /^[0-9a-f]{32}$/.test(spot.trace), `exemplars with trace ids drawn on the latency panel ${JSON.stringify(spot)}`);
await page.mouse.move(spot.x, spot.y);
await page.mouse.click(spot.x, spot.y);
await page.waitForURL(new RegExp(`/ui/traces/${spot.trace}`));
check(await page.locator("#waterfall details.span").count() >= 1, "clicking an exemplar opens its trace");
const redLink = await page.locator("a.span-red").first().getAttribute("href");
check(/^\/ui\/d\/oxeye-red\?var-service=/.test(redLink), "a span links to its service's RED dashboard");
check((await page.locator("a.span-logs").first().getAttribute("href")).startsWith("/ui/logs?query=span_id:"), "a span links to its logs");
await page.goto(`${base}${redLink}`);
await page.waitForFunction(() => Number(document.getElementById("dash").dataset.rendered || 0) >= 1, null, { timeout: 30000 });
check(new URL(page.url()).searchParams.getAll("var-service").length >= 1, "the service comes through the URL");

// Edit the JSON model in the browser, save, reload: the same dashboard.
await page.goto(`${base}/ui/d/oxeye-node`);
await page.waitForFunction(() => Number(document.getElementById("dash").dataset.rendered || 0) >= 1, null, { timeout: 30000 });
await page.click("#dash-edit");
const model = JSON.parse(await page.inputValue("#dash-dialog-text"));
model.title = "Node exporter (edited in Chromium)";
await page.fill("#dash-dialog-text", JSON.stringify(model, null, 2));
const drawnBefore = Number(await page.getAttribute("#dash", "data-rendered"));
await page.click("#dash-dialog-apply");
await page.waitForFunction(() => document.getElementById("dash-notice").textContent.startsWith("Saved version"));
// Redrawn with the saved model before the reload (nothing left in flight).
await page.waitForFunction(b => Number(document.getElementById("dash").dataset.rendered) > b, drawnBefore);
await page.reload();
await page.waitForFunction(() => document.getElementById("dash-title").textContent.includes("edited in Chromium"));
check(true, "an edit survives a reload");
await page.click("#dash-versions");
await page.waitForSelector("#dash-history tr[data-version] button");
const before = Number(await page.getAttribute("#dash", "data-rendered"));
await page.locator("#dash-history tr[data-version] button").first().click();
await page.waitForFunction(() => document.getElementById("dash-title").textContent === "Node exporter");
// Drawn again (no request left in flight when the browser closes).
await page.waitForFunction(b => Number(document.getElementById("dash").dataset.rendered) > b, before);
const restoredMeta = await page.evaluate(async () => (await (await fetch("/api/v1/dashboards/oxeye-node")).json()).meta);
check(restoredMeta.message.startsWith("restored version") && restoredMeta.version === 3, `an earlier version restored (${JSON.stringify(restoredMeta)})`);
await browser.close();
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("dashboard ok");

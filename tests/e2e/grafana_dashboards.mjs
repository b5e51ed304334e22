// Grafana dashboards imported unchanged and drawn by Oxeye, in Debian's
// headless Chromium (playwright-core). Run by tests/grafana_dashboards.rs:
// BASE_URL, DASHBOARDS (JSON: [{uid, file, expect_data}]), SHOTS and
// CHROMIUM come from the environment. For each dashboard every row is
// expanded and every panel must end drawn, "No data" or marked unsupported
// with a reason; a panel whose query failed fails the run. Prints one JSON
// line per dashboard (`DASHBOARD {...}`) with the counts, requests and the
// time until every panel was drawn. Bounded: every wait has a timeout.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const shots = process.env.SHOTS;
const dashboards = JSON.parse(process.env.DASHBOARDS);
const from = process.env.FROM || "now-1h";
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
page.setDefaultTimeout(60000);
const problems = [];
page.on("console", m => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
page.on("pageerror", e => problems.push(`page error: ${e.message}`));
page.on("response", r => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
let dataRequests = 0;
page.on("request", r => { if (/\/api\/v1\/(query|query_range|query_exemplars|series|labels|label\/)|\/es\/|\/api\/traces/.test(r.url())) dataRequests++; });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function settle(gen) {
  await page.waitForFunction(g => Number(document.getElementById("dash").dataset.rendered || 0) >= g, gen, { timeout: 120000 });
}

for (const d of dashboards) {
  dataRequests = 0;
  const started = Date.now();
  await page.goto(`${base}/ui/d/${d.uid}?from=${encodeURIComponent(from)}&to=now`);
  await settle(1);
  const firstMs = Date.now() - started;
  const firstRequests = dataRequests;
  // Expand every collapsed row, one after the other (each redraws the grid).
  let gen = Number(await page.getAttribute("#dash", "data-rendered"));
  for (;;) {
    const closed = page.locator(".dash-row:not(.open)");
    if (await closed.count() === 0) break;
    await closed.first().click();
    gen += 1;
    await settle(gen);
  }
  const allMs = Date.now() - started;
  // Every row open from the start (?rows=open): the whole dashboard at once.
  const requestsBefore = dataRequests;
  const openStarted = Date.now();
  await page.goto(`${base}/ui/d/${d.uid}?from=${encodeURIComponent(from)}&to=now&rows=open`);
  await settle(1);
  const wholeMs = Date.now() - openStarted;
  const wholeRequests = dataRequests - requestsBefore;
  const states = await page.$$eval("section.panel", els => els.map(s => {
    const body = s.querySelector(".panel-body");
    return { id: s.dataset.id, type: s.dataset.type, title: s.querySelector(".panel-title").textContent,
      state: body.dataset.state, error: body.dataset.error || null, text: body.innerText.slice(0, 200) };
  }));
  const count = k => states.filter(s => s.state === k).length;
  const notes = await page.$$eval(".panel-note", els => els.map(e => e.textContent));
  const errors = states.filter(s => s.state === "error" || s.state === "loading");
  const vars = await page.$$eval("#dash-vars select", els => Object.fromEntries(els.map(e => [e.name, [...e.options].map(o => o.value)])));
  const varErrors = await page.$$eval(".var-error", els => els.map(e => e.textContent));
  const renderMs = Number(await page.getAttribute("#dash", "data-render-ms"));
  const summary = { uid: d.uid, panels: states.length, drawn: count("drawn"), nodata: count("nodata"), unsupported: count("unsupported"),
    empty: count("empty"), errors: errors.length, first_render_ms: firstMs, first_requests: firstRequests, every_row_open_ms: allMs,
    all_rows_render_ms: renderMs, requests_all_rows: requestsBefore, whole_dashboard_ms: wholeMs, whole_dashboard_requests: wholeRequests, variables: vars, variable_errors: varErrors,
    notes,
    unsupported_reasons: [...new Set(states.filter(s => s.state === "unsupported").map(s => s.text))] };
  console.log("DASHBOARD " + JSON.stringify(summary));
  for (const e of errors) console.log(`  panel ${e.id} "${e.title}": ${e.state} ${e.error || e.text}`);
  if (d.screenshot !== false) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${shots}/dashboard-${d.uid}.png`, fullPage: false });
  }
  check(errors.length === 0, `${d.uid}: no panel failed its query (${errors.length} failed)`);
  check(varErrors.length === 0, `${d.uid}: every variable resolved ${JSON.stringify(varErrors)}`);
  if (d.expect_data) {
    check(summary.drawn >= d.expect_data, `${d.uid}: at least ${d.expect_data} panels drawn with data (${summary.drawn})`);
  }
  if (d.expect_unsupported !== undefined) {
    check(summary.unsupported === d.expect_unsupported, `${d.uid}: ${d.expect_unsupported} panel(s) say why they are not drawn ${JSON.stringify(summary.unsupported_reasons)}`);
  }
  if (d.expect_notes !== undefined) {
    check(notes.length === d.expect_notes, `${d.uid}: ${d.expect_notes} panel(s) say what is not as in Grafana ${JSON.stringify(notes)}`);
  }
  if (d.expect_vars) {
    for (const [name, value] of Object.entries(d.expect_vars)) {
      check((vars["var-" + name] || []).includes(value), `${d.uid}: variable ${name} lists ${value}`);
    }
  }
}
check(problems.length === 0, `no console errors or failed requests ${JSON.stringify(problems.slice(0, 10))}`);
await browser.close();
console.log("grafana dashboards ok");

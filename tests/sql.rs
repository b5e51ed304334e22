//! SQL over every signal (issue 15): known data through the real ingest
//! paths (remote_write, the OpenTelemetry Python SDK over OTLP/HTTP,
//! `_bulk`), answers checked against values computed here, over HTTP
//! (JSON, CSV, Arrow), `psql`, `psycopg` and `oxeye sql`; pushdown checked
//! on `EXPLAIN`; bad statements and limits.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{client, post_remote_write, remote_write_body, run_python, TestServer};
use serde_json::{json, Value};

/// One trace of `sql_spans.py`.
#[derive(Debug, Clone)]
struct Checkout {
    trace_id: String,
    span_id: String,
    region: String,
    error: bool,
    duration_ms: f64,
}

fn sql(server: &TestServer, query: &str) -> (u16, Value) {
    let response = client()
        .post(server.url("/api/v1/sql"))
        .json(&json!({ "query": query }))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

fn rows(server: &TestServer, query: &str) -> Vec<Vec<Value>> {
    let (status, body) = sql(server, query);
    assert_eq!(status, 200, "{query}: {body}");
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

fn plan(server: &TestServer, query: &str) -> String {
    rows(server, &format!("EXPLAIN {query}"))
        .iter()
        .map(|r| format!("{}: {}", r[0].as_str().unwrap(), r[1].as_str().unwrap()))
        .collect::<Vec<_>>()
        .join("\n")
}

const METRIC: &str = "checkout_latency_seconds";

/// Loads the traces (SDK), their logs (`_bulk`) and a metric per region
/// (remote_write): what every test here queries.
fn load(server: &TestServer) -> (Vec<Checkout>, Vec<(String, i64, f64)>) {
    let out = run_python(
        "sql_spans.py",
        &[("OTLP_ENDPOINT", format!("http://{}", server.otlp_http))],
    );
    let traces: Vec<Checkout> = serde_json::from_str::<Value>(out.lines().last().unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Checkout {
            trace_id: t["trace_id"].as_str().unwrap().to_owned(),
            span_id: t["span_id"].as_str().unwrap().to_owned(),
            region: t["region"].as_str().unwrap().to_owned(),
            error: t["error"].as_bool().unwrap(),
            duration_ms: t["duration_ms"].as_f64().unwrap(),
        })
        .collect();
    // Two log records per trace; error traces say "connection reset".
    let mut bulk = String::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (i, t) in traces.iter().enumerate() {
        for n in 0..2 {
            let message = if t.error {
                format!("payment declined: connection reset by peer ({n})")
            } else {
                format!("cart shown to customer ({n})")
            };
            bulk.push_str("{\"index\":{\"_index\":\"app-logs\"}}\n");
            bulk.push_str(
                &json!({
                    "@timestamp": now_ms - 50_000 + (i as i64) * 1000 + n,
                    "message": message,
                    "log.level": if t.error { "ERROR" } else { "INFO" },
                    "service.name": "checkout",
                    "trace_id": t.trace_id,
                    "span_id": t.span_id,
                    "customer": {"region": t.region},
                })
                .to_string(),
            );
            bulk.push('\n');
        }
    }
    let response = client()
        .post(format!(
            "http://{}/_bulk?refresh=true",
            server.elasticsearch
        ))
        .header("Content-Type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["errors"], false, "{body}");
    // A gauge per region, one sample every 15 s over five minutes.
    let start = (now_ms - 300_000) / 60_000 * 60_000;
    let mut samples = Vec::new();
    let regions = ["eu", "us", "ap"];
    let mut series = Vec::new();
    for (r, region) in regions.iter().enumerate() {
        let points: Vec<(i64, f64)> = (0..20)
            .map(|k| (start + k * 15_000, (r as f64 + 1.0) * 0.1 + k as f64 * 0.01))
            .collect();
        for (t, v) in &points {
            samples.push((region.to_string(), *t, *v));
        }
        series.push((
            vec![("__name__", METRIC), ("region", *region), ("job", "shop")],
            points,
        ));
    }
    let (status, text) = post_remote_write(&server.url(""), remote_write_body(&series));
    assert_eq!(status, 204, "{text}");
    // Spans reach the store when the SDK's exporter returns; wait for all
    // twelve to be readable.
    common::wait_for(Duration::from_secs(30), || {
        let r = rows(server, "SELECT count(*) FROM spans");
        (r[0][0] == json!(12)).then_some(())
    })
    .expect("12 spans stored");
    (traces, samples)
}

#[test]
fn sql_answers_over_http_match_the_loaded_data() {
    let server = TestServer::start();
    let (traces, samples) = load(&server);

    // Counts and group-bys.
    assert_eq!(
        rows(
            &server,
            "SELECT service, count(*) AS n FROM spans GROUP BY service ORDER BY service"
        ),
        vec![
            vec![json!("checkout"), json!(6)],
            vec![json!("payments"), json!(6)]
        ]
    );
    // "Which customers saw 5xx responses in slow traces, by region": the
    // test's own answer first.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for t in traces.iter().filter(|t| t.error && t.duration_ms > 150.0) {
        *expected.entry(t.region.clone()).or_default() += 1;
    }
    let got: BTreeMap<String, i64> = rows(
        &server,
        "SELECT attributes['customer.region'] AS region, count(*) FROM spans \
         WHERE status_code = 'ERROR' AND attributes['http.response.status_code'] = '500' \
         AND duration_ms > 150 GROUP BY 1",
    )
    .into_iter()
    .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
    .collect();
    assert_eq!(got, expected);
    assert!(!expected.is_empty());

    // Time bucketing of samples with date_bin, against sums computed here.
    let mut by_minute: BTreeMap<i64, f64> = BTreeMap::new();
    for (_, t, v) in &samples {
        *by_minute.entry(t / 60_000 * 60_000).or_default() += v;
    }
    let got = rows(
        &server,
        &format!(
            "SELECT date_bin(INTERVAL '1 minute', \"timestamp\", TIMESTAMP '1970-01-01T00:00:00Z') AS minute, \
             sum(value) AS total, count(*) AS n FROM samples WHERE metric = '{METRIC}' \
             GROUP BY 1 ORDER BY 1"
        ),
    );
    assert_eq!(got.len(), by_minute.len(), "{got:?}");
    for (row, (minute, total)) in got.iter().zip(&by_minute) {
        let t = chrono::DateTime::parse_from_rfc3339(row[0].as_str().unwrap()).unwrap();
        assert_eq!(t.timestamp_millis(), *minute);
        assert!((row[1].as_f64().unwrap() - total).abs() < 1e-9, "{row:?}");
        assert_eq!(row[2], json!(12));
    }

    // A join of logs and spans on the trace id: error log lines per region.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for t in traces.iter().filter(|t| t.error) {
        *expected.entry(t.region.clone()).or_default() += 2;
    }
    let got: BTreeMap<String, i64> = rows(
        &server,
        "SELECT s.attributes['customer.region'], count(*) FROM logs l \
         JOIN spans s ON l.trace_id = s.trace_id \
         WHERE s.parent_span_id IS NULL AND l.severity = 'ERROR' GROUP BY 1",
    )
    .into_iter()
    .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
    .collect();
    assert_eq!(got, expected);

    // A join of span latency with a metric, by region.
    let got = rows(
        &server,
        &format!(
            "SELECT s.attributes['customer.region'] AS region, avg(s.duration_ms) AS latency, \
             max(m.value) AS gauge FROM spans s JOIN samples m \
             ON m.labels['region'] = s.attributes['customer.region'] \
             WHERE m.metric = '{METRIC}' AND s.parent_span_id IS NULL GROUP BY 1 ORDER BY 1"
        ),
    );
    assert_eq!(got.len(), 3);
    for row in &got {
        let region = row[0].as_str().unwrap();
        let durations: Vec<f64> = traces
            .iter()
            .filter(|t| t.region == region)
            .map(|t| t.duration_ms)
            .collect();
        let mean = durations.iter().sum::<f64>() / durations.len() as f64;
        assert!((row[1].as_f64().unwrap() - mean).abs() < 1e-6, "{row:?}");
        let max = samples
            .iter()
            .filter(|(r, ..)| r == region)
            .map(|(_, _, v)| *v)
            .fold(f64::MIN, f64::max);
        assert!((row[2].as_f64().unwrap() - max).abs() < 1e-12, "{row:?}");
    }

    // Full text: match() over the log bodies.
    let errors = traces.iter().filter(|t| t.error).count() as i64;
    assert_eq!(
        rows(
            &server,
            "SELECT count(*) FROM logs WHERE match(body, 'Connection RESET')"
        ),
        vec![vec![json!(errors * 2)]]
    );
    // The same predicate away from the log store (evaluated row by row).
    assert_eq!(
        rows(
            &server,
            "SELECT count(*) FROM (SELECT body || '' AS b FROM logs) WHERE match(b, 'connection reset')"
        ),
        vec![vec![json!(errors * 2)]]
    );
    // Logs columns: severity and service from the record, ids as hex.
    let first = &traces[1];
    let got = rows(
        &server,
        &format!(
            "SELECT index, severity, service, trace_id, span_id, attributes['customer.region'] \
             FROM logs WHERE trace_id = '{}' ORDER BY \"@timestamp\"",
            first.trace_id
        ),
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        vec![
            json!("app-logs"),
            json!("ERROR"),
            json!("checkout"),
            json!(first.trace_id),
            json!(first.span_id),
            json!(first.region)
        ]
    );
    // A trace by id, both services.
    let got = rows(
        &server,
        &format!(
            "SELECT service, name, kind, status_code FROM spans WHERE trace_id = '{}' ORDER BY service",
            first.trace_id
        ),
    );
    assert_eq!(
        got,
        vec![
            vec![
                json!("checkout"),
                json!("GET /cart"),
                json!("server"),
                json!("ERROR")
            ],
            vec![
                json!("payments"),
                json!("charge"),
                json!("client"),
                json!("UNSET")
            ],
        ]
    );

    // One table per metric, one column per label.
    let got = rows(
        &server,
        &format!("SELECT region, count(*), min(value) FROM metrics.{METRIC} GROUP BY region ORDER BY region"),
    );
    assert_eq!(
        got.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        vec![json!("ap"), json!("eu"), json!("us")]
    );
    assert!(got.iter().all(|r| r[1] == json!(20)));
    assert_eq!(
        rows(
            &server,
            "SELECT count(*) FROM series WHERE labels['job'] = 'shop'"
        ),
        vec![vec![json!(3)]]
    );

    // The shipped views.
    let got = rows(
        &server,
        "SELECT service, operation, spans, errors FROM errors_by_service ORDER BY service",
    );
    assert_eq!(
        got,
        vec![
            vec![
                json!("checkout"),
                json!("GET /cart"),
                json!(6),
                json!(errors)
            ],
            vec![json!("payments"), json!("charge"), json!(6), json!(0)],
        ]
    );
    assert_eq!(
        rows(&server, "SELECT count(*) FROM error_logs"),
        vec![vec![json!(errors * 2)]]
    );
    assert_eq!(
        rows(
            &server,
            "SELECT count(*) FROM logs_with_spans WHERE span_status = 'ERROR'"
        ),
        vec![vec![json!(errors * 2)]]
    );

    // Column names and SQL types.
    let (_, body) = sql(
        &server,
        "SELECT service, duration_ns, duration_ms, start_time, attributes FROM spans LIMIT 1",
    );
    assert_eq!(
        body["columns"],
        json!([
            {"name": "service", "type": "text"},
            {"name": "duration_ns", "type": "bigint"},
            {"name": "duration_ms", "type": "double precision"},
            {"name": "start_time", "type": "timestamp with time zone"},
            {"name": "attributes", "type": "json"},
        ])
    );
}

#[test]
fn filters_are_pushed_down_to_the_stores() {
    let server = TestServer::start();
    let (traces, _) = load(&server);
    let id = &traces[0].trace_id;
    let p = plan(
        &server,
        &format!("SELECT name FROM spans WHERE trace_id = '{id}'"),
    );
    assert!(
        p.contains(&format!("pushed_down=[trace_id = \"{id}\"]")),
        "{p}"
    );
    let p = plan(
        &server,
        "SELECT count(*) FROM spans WHERE service = 'payments' AND start_time > now() - INTERVAL '1 hour'",
    );
    assert!(p.contains("service = \"payments\""), "{p}");
    assert!(p.contains("start_time in ["), "{p}");
    let p = plan(
        &server,
        &format!("SELECT value FROM samples WHERE metric = '{METRIC}' AND labels['region'] ~ 'e.' AND \"timestamp\" >= TIMESTAMP '2024-01-01T00:00:00Z'"),
    );
    assert!(p.contains(&format!("metric = \"{METRIC}\"")), "{p}");
    assert!(p.contains("labels[\"region\"] =~ \"e.\""), "{p}");
    assert!(
        p.contains("timestamp in [2024-01-01T00:00:00.000Z, +inf]"),
        "{p}"
    );
    let p = plan(
        &server,
        "SELECT body FROM logs WHERE match(body, 'connection reset') AND index = 'app-logs' AND severity = 'ERROR'",
    );
    assert!(p.contains("match(body, \"connection reset\")"), "{p}");
    assert!(p.contains("indices=[\"app-logs\"]"), "{p}");
    assert!(p.contains("tantivy:"), "{p}");
    // A filter the store cannot use stays above the scan.
    let p = plan(&server, "SELECT name FROM spans WHERE length(name) > 3");
    assert!(p.contains("OxeyeScan: table=spans"), "{p}");
    assert!(!p.contains("pushed_down"), "{p}");
    // Pushed-down answers equal unpushed ones.
    let pushed = rows(
        &server,
        "SELECT count(*) FROM spans WHERE service = 'payments'",
    );
    let kept = rows(
        &server,
        "SELECT count(*) FROM spans WHERE service || '' = 'payments'",
    );
    assert_eq!(pushed, kept);
    assert_eq!(pushed, vec![vec![json!(6)]]);
}

#[test]
fn csv_and_arrow_answers() {
    let server = TestServer::start();
    load(&server);
    let response = client()
        .post(server.url("/api/v1/sql"))
        .header("Accept", "text/csv")
        .json(&json!({"query": "SELECT service, count(*) AS n FROM spans GROUP BY service ORDER BY service"}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.text().unwrap(),
        "service,n\ncheckout,6\npayments,6\n"
    );
    let response = client()
        .post(server.url("/api/v1/sql"))
        .header("Accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"query": "SELECT service, duration_ns FROM spans ORDER BY duration_ns"}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().unwrap();
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let mut total = 0;
    for batch in reader {
        let batch = batch.unwrap();
        assert_eq!(batch.schema().field(0).name(), "service");
        total += batch.num_rows();
    }
    assert_eq!(total, 12);
    // A form body works too (curl --data-urlencode).
    let response = client()
        .post(server.url("/api/v1/sql"))
        .form(&[("query", "SELECT 1 + 1 AS two")])
        .send()
        .unwrap();
    let body: Value = response.json().unwrap();
    assert_eq!(body["rows"], json!([[2]]));
}

#[test]
fn psql_psycopg_and_the_cli_get_the_same_answers() {
    let server = TestServer::start();
    let (traces, _) = load(&server);
    let errors = traces.iter().filter(|t| t.error).count();
    let port = server.postgres.port().to_string();
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "oxeye",
            "-d",
            "oxeye",
            "-At",
            "-F",
            ",",
        ])
        .args([
            "-c",
            "SELECT service, count(*) FROM spans GROUP BY service ORDER BY service",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian postgresql-client) is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "checkout,6\npayments,6\n"
    );
    // Two statements in one simple query, and an error with its SQLSTATE.
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "oxeye",
            "-d",
            "oxeye",
            "-At",
        ])
        .args(["-c", "SELECT 1; SELECT count(*) FROM logs"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1\n12\n");
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "oxeye",
            "-d",
            "oxeye",
            "-At",
        ])
        .args(["-v", "VERBOSITY=verbose", "-c", "SELECT nope FROM spans"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("nope"), "{err}");

    let out = run_python("sql_psycopg.py", &[("PG_PORT", port.clone())]);
    let got: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(got["by_service"], json!([["checkout", 6], ["payments", 6]]));
    assert_eq!(got["columns"], json!(["service", "n"]));
    assert_eq!(got["errors"], json!(errors));
    assert!(got["latest"].as_str().unwrap().ends_with("+00:00"), "{got}");
    assert_eq!(got["error_state"], "42P01", "{got}");
    assert_eq!(got["autocommit"], json!(2));
    assert_eq!(got["write_state"], "25006", "{got}");

    let output = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(["sql", "--url", &server.url(""), "--format", "csv"])
        .arg("SELECT service, count(*) AS n FROM spans GROUP BY service ORDER BY service")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "service,n\ncheckout,6\npayments,6\n"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(["sql", "--url", &server.url("")])
        .arg("SELECT * FROM nowhere")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nowhere"));
}

#[test]
fn bad_statements_get_clear_errors_and_limits_stop_queries() {
    let server = TestServer::start_with(&[
        ("OXEYE_SQL__MAX_ROWS", "1000"),
        ("OXEYE_SQL__TIMEOUT", "2s"),
        ("OXEYE_SQL__MAX_MEMORY", "8MiB"),
        ("OXEYE_QUERY__MAX_SAMPLES", "50"),
    ]);
    load(&server);
    let check = |query: &str, status: u16, kind: &str, needle: &str| {
        let (got, body) = sql(&server, query);
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["errorType"], kind, "{query}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    };
    check("SELEKT 1", 400, "syntax", "SELEKT");
    check("SELECT * FROM nowhere", 400, "plan", "nowhere");
    check("SELECT nope FROM spans", 400, "plan", "nope");
    check("SELECT 1; SELECT 2", 400, "syntax", "one statement");
    check(
        "INSERT INTO spans (name) VALUES ('x')",
        400,
        "read_only",
        "read-only",
    );
    check("CREATE VIEW v AS SELECT 1", 400, "read_only", "read-only");
    check("DROP VIEW errors_by_service", 400, "read_only", "read-only");
    check(
        "SET datafusion.execution.batch_size = 1",
        400,
        "read_only",
        "read-only",
    );
    // A cross join bomb: more rows than sql.max_rows…
    check(
        "SELECT a.span_id, b.span_id, c.span_id, d.span_id FROM spans a, spans b, spans c, spans d",
        422,
        "limit",
        "sql.max_rows",
    );
    // …more time than sql.timeout…
    check(
        "SELECT sum(value % 7) FROM generate_series(1, 100000000000)",
        503,
        "timeout",
        "sql.timeout",
    );
    // …or more memory than sql.max_memory (9M groups).
    check(
        "SELECT count(*) FROM (SELECT a.value * 3001 + b.value AS k, count(*) FROM \
         generate_series(1, 3000) a, generate_series(1, 3000) b GROUP BY k)",
        422,
        "limit",
        "sql.max_memory",
    );
    // …or more samples than query.max_samples (60 are stored).
    check(
        "SELECT count(*) FROM samples",
        422,
        "limit",
        "query.max_samples (50)",
    );
    assert_eq!(
        rows(
            &server,
            "SELECT count(*) FROM samples WHERE labels['region'] = 'eu'"
        ),
        vec![vec![json!(20)]]
    );
    let (status, body) = client()
        .post(server.url("/api/v1/sql"))
        .body("not json")
        .send()
        .map(|r| (r.status().as_u16(), r.text().unwrap()))
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not JSON"), "{body}");
    // Still healthy, still answering.
    assert_eq!(
        rows(&server, "SELECT count(*) FROM spans"),
        vec![vec![json!(12)]]
    );
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("oxeye_sql_queries_total{outcome=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[test]
fn fresh_and_upgraded_data_directories_end_with_the_same_catalogue() {
    use oxeye::query::sql::catalog::{Catalog, MIGRATIONS};
    // Every file of migrations/ is in the list, in order.
    let mut files: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
    files.sort();
    let listed: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_owned()).collect();
    assert_eq!(files, listed);
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1);
    }
    let fresh = tempfile::tempdir().unwrap();
    let all = Catalog::migrate(fresh.path()).unwrap();
    let upgraded = tempfile::tempdir().unwrap();
    let old = Catalog::migrate_with(upgraded.path(), &MIGRATIONS[..1]).unwrap();
    assert!(old.views.len() < all.views.len());
    let now = Catalog::migrate(upgraded.path()).unwrap();
    assert_eq!(now, all);
    // Applied once: a second start changes nothing.
    assert_eq!(Catalog::migrate(upgraded.path()).unwrap(), all);

    // The same through a server: an old data directory and a fresh one
    // list the same views, with the same definitions.
    let listing = |server: &TestServer| {
        rows(
            server,
            "SELECT table_name, definition FROM information_schema.views \
             WHERE table_schema = 'public' AND definition IS NOT NULL ORDER BY table_name",
        )
    };
    let old_dir = tempfile::tempdir().unwrap();
    Catalog::migrate_with(&old_dir.path().join("sql"), &MIGRATIONS[..1]).unwrap();
    let upgraded = TestServer::start_in(old_dir, &[]);
    let fresh = TestServer::start();
    let views = listing(&fresh);
    assert_eq!(listing(&upgraded), views);
    let names: Vec<&str> = views.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "error_logs",
            "errors_by_service",
            "http_requests",
            "logs_with_spans",
            "slow_queries"
        ]
    );
}

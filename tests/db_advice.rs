//! Database advice from real instrumentation: a small app using Python's
//! sqlite3 under `opentelemetry-instrumentation-sqlite3` runs a known
//! workload (an N+1 loop, its batched twin, a full-scan lookup) and exports
//! its spans to the server; the findings and templates are checked against
//! that workload. Plus synthetic OTLP spans for HTTP N+1 calls, statements
//! that do not parse, spans without statements, and bad parameters.

mod common;

use common::*;
use serde_json::{json, Value};

fn advice(server: &TestServer, query: &str) -> Value {
    let url = server.url(&format!("/api/v1/recommendations/database?{query}"));
    let response = client().get(&url).send().unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().unwrap()
}

fn finding<'a>(report: &'a Value, kind: &str, template_part: &str) -> Option<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind && f["template"].as_str().unwrap_or("").contains(template_part))
}

#[test]
fn n_plus_one_slow_queries_and_templates_from_sqlite3_instrumentation() {
    // Sentry's thresholds are meant for production latencies; sqlite3 in
    // memory answers in microseconds, so the test lowers them.
    let server = TestServer::start_with(&[
        ("OXEYE_RECOMMENDATIONS__N_PLUS_ONE_MIN_TOTAL", "0s"),
        ("OXEYE_RECOMMENDATIONS__DB_SLOW_QUERY", "2ms"),
    ]);
    let out = run_python(
        "db_app.py",
        &[("OTLP_ENDPOINT", format!("http://{}", server.otlp_grpc))],
    );
    let app: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let requests = app["requests"].as_u64().unwrap();
    let users = app["users"].as_u64().unwrap();
    // postgres_exporter series for the same tables: events read by
    // sequential scans, an index on it never used, items by its index.
    let now = base_ms() + 600_000;
    let times: Vec<i64> = (0..=40).map(|k| now - 600_000 + k * 15_000).collect();
    let counter = |per_second: f64| {
        times
            .iter()
            .map(|t| (*t, 100.0 + (t - times[0]) as f64 / 1000.0 * per_second))
            .collect::<Vec<_>>()
    };
    let table = |name: &'static str, rel: &'static str| {
        vec![
            ("__name__", name),
            ("datname", "shop"),
            ("schemaname", "main"),
            ("relname", rel),
        ]
    };
    let mut pg: Vec<TestSeries> = vec![
        (
            table("pg_stat_user_tables_seq_scan", "events"),
            counter(1.0),
        ),
        (
            table("pg_stat_user_tables_idx_scan", "events"),
            counter(0.0),
        ),
        (
            table("pg_stat_user_tables_seq_tup_read", "events"),
            counter(200_000.0),
        ),
        (
            table("pg_stat_user_tables_seq_scan", "items"),
            counter(0.01),
        ),
        (
            table("pg_stat_user_tables_idx_scan", "items"),
            counter(10.0),
        ),
        (
            table("pg_stat_user_tables_seq_tup_read", "items"),
            counter(100.0),
        ),
    ];
    let mut index = |rel: &'static str, idx: &'static str, per_second: f64| {
        let mut l = table("pg_stat_user_indexes_idx_scan", rel);
        l.push(("indexrelname", idx));
        pg.push((l, counter(per_second)));
    };
    index("events", "events_created", 0.0);
    index("items", "items_user", 10.0);
    let (status, text) = post_remote_write(&server.url(""), remote_write_body(&pg));
    assert_eq!(status, 204, "{text}");
    let report = wait_for(std::time::Duration::from_secs(20), || {
        let r = advice(&server, "");
        (r["db_calls"].as_u64()? >= requests * (users + 1)).then_some(r)
    })
    .expect("the app's spans arrive");

    // pg_stat_statements from the outside: the per-user query is one
    // template called REQUESTS × USERS times, 20 per trace.
    let templates = report["templates"].as_array().unwrap();
    let per_user = templates
        .iter()
        .find(|t| t["template"] == "SELECT id, title FROM items WHERE user_id = ?")
        .unwrap_or_else(|| panic!("{templates:#?}"));
    assert_eq!(per_user["calls"], requests * users);
    assert_eq!(per_user["calls_per_trace"], users as f64);
    assert_eq!(per_user["system"], "sqlite");
    assert_eq!(per_user["services"], json!(["shop-api"]));
    assert_eq!(
        per_user["endpoints"][0]["endpoint"],
        "shop-api: GET /orders"
    );
    // The batched variant's IN list of 20 literals is one placeholder.
    assert!(
        templates
            .iter()
            .any(|t| t["template"] == "SELECT id, title FROM items WHERE user_id IN (?)"),
        "{templates:#?}"
    );

    // N+1: found once per /orders request, never for the batched one.
    let n1 = finding(&report, "n_plus_one_query", "WHERE user_id = ?")
        .unwrap_or_else(|| panic!("{:#}", report["findings"]));
    assert_eq!(n1["occurrences"], requests);
    assert_eq!(n1["calls_per_occurrence"], users as f64);
    let orders: Vec<&str> = app["traces"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for example in n1["example_trace_ids"].as_array().unwrap() {
        assert!(orders.contains(&example.as_str().unwrap()), "{example}");
    }
    assert!(finding(&report, "n_plus_one_query", "IN (?)").is_none());
    // The example trace opens in the trace view.
    let trace = n1["example_trace_ids"][0].as_str().unwrap();
    let page = client()
        .get(server.url(&format!("/ui/traces/{trace}")))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("WHERE user_id = ?"));

    // The full scan is slow, with an index on the column it filters.
    let slow = finding(&report, "slow_query", "count(*) FROM events WHERE kind = ?")
        .unwrap_or_else(|| panic!("{:#}", report["findings"]));
    assert_eq!(slow["calls"], app["slow"]);
    let index = finding(
        &report,
        "index_candidate",
        "count(*) FROM events WHERE kind = ?",
    )
    .unwrap();
    assert_eq!(
        index["statement"],
        "CREATE INDEX idx_events_kind ON events (kind);"
    );
    // The indexed per-user lookup is not called slow.
    assert!(finding(&report, "slow_query", "WHERE user_id = ?").is_none());

    // N+1 HTTP from the requests instrumentation: the product ids in the
    // URL become {id} and the query string is dropped.
    let catalogue = app["catalogue"].as_str().unwrap();
    let host_port = catalogue.trim_start_matches("http://");
    let http = finding(
        &report,
        "n_plus_one_http",
        &format!("{host_port}/products/{{id}}"),
    )
    .unwrap_or_else(|| panic!("{:#}", report["findings"]));
    assert_eq!(http["occurrences"], app["carts"]);
    assert_eq!(
        http["calls_per_occurrence"],
        app["products"].as_f64().unwrap()
    );
    let carts: Vec<&str> = app["traces"]["cart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for example in http["example_trace_ids"].as_array().unwrap() {
        assert!(carts.contains(&example.as_str().unwrap()), "{example}");
    }

    // The command line prints the same findings.
    for (format, needle) in [
        ("table", "n_plus_one_query"),
        ("csv", "index_candidate,"),
        ("json", "\"findings\""),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxeye"))
            .args([
                "recommend",
                "database",
                "--url",
                &server.url(""),
                "--service",
                "shop-api",
                "--format",
                format,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{format}: {text}");
    }

    // Index usage from the exporter, joined with the slow template.
    let usage = &report["index_usage"];
    assert_eq!(
        usage["unused_indexes"].as_array().unwrap().len(),
        1,
        "{usage:#}"
    );
    assert_eq!(usage["unused_indexes"][0]["index"], "events_created");
    let seq = usage["sequentially_scanned_tables"].as_array().unwrap();
    assert_eq!(seq.len(), 1, "{usage:#}");
    assert_eq!(seq[0]["table"], "events");
    assert!(
        seq[0]["slow_templates"][0]
            .as_str()
            .unwrap()
            .contains("FROM events"),
        "{usage:#}"
    );

    // service= narrows; another service has nothing.
    let none = advice(&server, "service=other");
    assert_eq!(none["db_calls"], 0);
}

/// Ten minutes ago, on a whole second (inside the trace retention).
fn base_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (now - 600_000) / 1000 * 1000
}

#[allow(clippy::too_many_arguments)]
fn span(
    base: i64,
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &str,
    kind: u8,
    start_ms: i64,
    ms: i64,
    attrs: Value,
) -> Value {
    let base: i64 = base + start_ms;
    let mut s = json!({
        "traceId": format!("{:032x}", trace as u128 + 0xab00),
        "spanId": format!("{:016x}", id as u64 + 0x100),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": (base * 1_000_000).to_string(),
        "endTimeUnixNano": ((base + ms) * 1_000_000).to_string(),
        "attributes": attrs.as_object().unwrap().iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
    });
    if let Some(p) = parent {
        s["parentSpanId"] = json!(format!("{:016x}", p as u64 + 0x100));
    }
    s
}

#[test]
fn http_n_plus_one_unparsable_and_missing_statements_and_bad_parameters() {
    let server = TestServer::start_with(&[("OXEYE_RECOMMENDATIONS__N_PLUS_ONE_MIN_TOTAL", "50ms")]);
    let b = base_ms();
    let mut spans = vec![span(b, 1, 1, None, "GET /cart", 2, 0, 500, json!({}))];
    // Six sequential calls to one product endpoint, 20 ms each.
    for i in 0..6u8 {
        spans.push(span(
            b,
            1,
            10 + i,
            Some(1),
            "GET",
            3,
            10 + 25 * i as i64,
            20,
            json!({
                "http.request.method": "GET",
                "url.full": format!("http://catalog:8080/products/{}?lang=en", 1000 + i as u32),
                "server.address": "catalog",
            }),
        ));
    }
    // Five concurrent ones to another: not N+1 (they already overlap).
    for i in 0..5u8 {
        spans.push(span(
            b,
            1,
            30 + i,
            Some(1),
            "GET",
            3,
            200,
            20,
            json!({
                "http.request.method": "GET", "url.full": format!("http://stock:8080/stock/{i}"),
            }),
        ));
    }
    // Three different reads one after the other, 60 ms each, under their
    // own parent.
    spans.push(span(
        b,
        1,
        59,
        Some(1),
        "load profile",
        1,
        990,
        300,
        json!({}),
    ));
    for (i, table) in ["customers", "addresses", "coupons"].iter().enumerate() {
        spans.push(span(
            b,
            1,
            60 + i as u8,
            Some(59),
            "SELECT",
            3,
            1000 + 61 * i as i64,
            60,
            json!({
                "db.system": "postgresql",
                "db.statement": format!("SELECT * FROM {table} WHERE customer_id = 7"),
            }),
        ));
    }
    // A statement that does not parse, one without a statement, a huge one.
    spans.push(span(
        b,
        1,
        50,
        Some(1),
        "q",
        3,
        300,
        5,
        json!({"db.system": "postgresql", "db.statement": "SELEKT 1 FROM t WHERE a = 42"}),
    ));
    spans.push(span(b, 1, 51, Some(1), "q", 3, 310, 5, json!({"db.system.name": "postgresql", "db.operation.name": "SELECT", "db.collection.name": "orders"})));
    let huge = format!(
        "SELECT * FROM t WHERE a IN ({})",
        vec!["1"; 50_000].join(",")
    );
    spans.push(span(
        b,
        1,
        52,
        Some(1),
        "q",
        3,
        320,
        5,
        json!({"db.system": "mysql", "db.statement": huge}),
    ));
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
        "scopeSpans": [{"spans": spans}],
    }]});
    let response = client()
        .post(server.url("/v1/traces"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    let report = advice(
        &server,
        &format!("start={}&end={}", b / 1000 - 1, b / 1000 + 2),
    );
    let n1 = finding(&report, "n_plus_one_http", "catalog:8080/products/{id}")
        .unwrap_or_else(|| panic!("{:#}", report["findings"]));
    assert_eq!(n1["calls_per_occurrence"], 6.0);
    assert_eq!(n1["template"], "GET catalog:8080/products/{id}");
    assert!(finding(&report, "n_plus_one_http", "stock").is_none());
    let consecutive = finding(&report, "consecutive_queries", "FROM customers")
        .unwrap_or_else(|| panic!("{:#}", report["findings"]));
    assert_eq!(consecutive["queries_per_occurrence"], 3);
    // Concurrently they would take 60 ms instead of 180: 120 ms saved once
    // in a window of 3 s.
    let per_hour = consecutive["saving_per_hour_seconds"].as_f64().unwrap();
    assert!((per_hour - 0.120 / 3.0 * 3600.0).abs() < 1e-6, "{per_hour}");
    let templates = report["templates"].as_array().unwrap();
    let has = |t: &str| templates.iter().any(|x| x["template"] == t);
    assert!(has("SELEKT ? FROM t WHERE a = ?"), "{templates:#?}");
    assert!(has("SELECT orders"), "{templates:#?}");
    assert!(templates
        .iter()
        .any(|x| x["template"].as_str().unwrap().ends_with(" …")));
    assert!(report["notes"][0]
        .as_str()
        .unwrap()
        .contains("no statement"));

    for (query, needle) in [
        ("end=yesterday", "end"),
        ("start=10&end=5", "before start"),
        ("start=-1e19", "start"),
    ] {
        let response = client()
            .get(server.url(&format!("/api/v1/recommendations/database?{query}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
}

/// LRU of `size` entries, simulated: the hit ratio over `keys`.
fn lru_hits(keys: &[u32], size: usize) -> f64 {
    let mut cache: Vec<u32> = Vec::new();
    let mut hits = 0;
    for k in keys {
        if let Some(p) = cache.iter().position(|x| x == k) {
            hits += 1;
            cache.remove(p);
        } else if cache.len() == size {
            cache.remove(0);
        }
        cache.push(*k);
    }
    hits as f64 / keys.len() as f64
}

#[test]
fn cache_opportunities_ttl_advice_and_redis_hit_ratios() {
    let server = TestServer::start_with(&[("OXEYE_RECOMMENDATIONS__CACHE_MAX_STALE_SHARE", "0.2")]);
    let b = base_ms();
    // 200 reads every 100 ms of 20 products in a fixed rotation (each key
    // comes back after 2 s), and one UPDATE of the table at 10.05 s.
    let keys: Vec<u32> = (0..200u32).map(|i| (i * 7) % 20).collect();
    let mut spans = vec![span(
        b,
        2,
        1,
        None,
        "GET /products",
        2,
        0,
        25_000,
        json!({}),
    )];
    for (i, k) in keys.iter().enumerate() {
        spans.push(span(
            b,
            2,
            10 + i as u8,
            Some(1),
            "SELECT",
            3,
            100 * i as i64,
            2,
            json!({
                "db.system": "postgresql",
                "db.statement": format!("SELECT name, price FROM products WHERE id = {k}"),
            }),
        ));
    }
    spans.push(span(b, 2, 250, Some(1), "UPDATE", 3, 10_050, 2, json!({
        "db.system": "postgresql", "db.statement": "UPDATE products SET price = 10 WHERE id = 3",
    })));
    // Redis, cache-aside: a miss (GET then SET), a hit, another miss, and a
    // key written that nobody reads.
    let redis = |trace: u8, id: u8, at: i64, statement: &str| {
        span(
            b,
            trace,
            id,
            None,
            statement.split(' ').next().unwrap(),
            3,
            at,
            1,
            json!({"db.system": "redis", "db.statement": statement}),
        )
    };
    spans.push(redis(3, 1, 0, "GET cart:1"));
    spans.push(redis(3, 2, 5, "SET cart:1 {}"));
    spans.push(redis(4, 1, 100, "GET cart:1"));
    spans.push(redis(5, 1, 200, "GET cart:2"));
    spans.push(redis(5, 2, 205, "SET cart:2 {}"));
    spans.push(redis(6, 1, 300, "SET session:9f8e7d6c5b {}"));
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeSpans": [{"spans": spans}],
    }]});
    let response = client()
        .post(server.url("/v1/traces"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    let url = server.url(&format!(
        "/api/v1/recommendations/cache?start={}&end={}",
        b / 1000 - 1,
        b / 1000 + 60
    ));
    let report: Value = client().get(&url).send().unwrap().json().unwrap();
    let c = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["template"] == "SELECT name, price FROM products WHERE id = ?")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(c["keyed"], "exact");
    assert_eq!(c["reads"], 200);
    assert_eq!(c["distinct_keys"], 20);
    assert_eq!(c["achievable_hit_ratio"], 0.9);
    // The curve equals a simulated LRU at every size.
    for point in c["curve"].as_array().unwrap() {
        let size = point["entries"].as_u64().unwrap() as usize;
        assert_eq!(point["hit_ratio"], lru_hits(&keys, size), "size {size}");
    }
    // TTL: keys come back after 2 s, so 1 s gets nothing and 5 s every
    // repeat; the update at 10.05 s makes stale the 20 repeats whose
    // previous read came before it.
    let ttl = |s: f64| {
        c["ttl"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["seconds"] == s)
            .unwrap()
            .clone()
    };
    assert_eq!(ttl(1.0)["hit_ratio"], 0.0);
    assert_eq!(ttl(5.0)["hit_ratio"], 0.9);
    let stale: usize = {
        let mut last = std::collections::HashMap::new();
        let mut stale = 0;
        for (i, k) in keys.iter().enumerate() {
            let t = 100 * i as i64;
            if let Some(prev) = last.insert(*k, t) {
                if prev <= 10_050 && t > 10_050 {
                    stale += 1;
                }
            }
        }
        stale
    };
    assert_eq!(stale, 20);
    assert_eq!(ttl(5.0)["stale_share"], stale as f64 / 180.0);
    assert_eq!(c["advised_ttl_seconds"], 5.0);

    let pattern = |p: &str| {
        report["redis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pattern"] == p)
            .unwrap_or_else(|| panic!("{report:#}"))
            .clone()
    };
    let cart = pattern("cart:?");
    assert_eq!(
        (
            cart["gets"].as_u64(),
            cart["misses"].as_u64(),
            cart["hits"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(cart["keys_written_never_read"], 0);
    assert_eq!(pattern("session:?")["keys_written_never_read"], 1);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args([
            "recommend",
            "cache",
            "--url",
            &server.url(""),
            "--format",
            "table",
        ])
        .args([
            "--start",
            &(b / 1000 - 1).to_string(),
            "--end",
            &(b / 1000 + 60).to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.contains("FROM products"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("90.0 %") && line.contains("5 s"), "{table}");
    assert!(table.contains("redis cart:?"), "{table}");
}

/// Connection pools from the OpenTelemetry `db.client.connection.*`
/// metrics (as Prometheus' OTLP translation names them), over remote_write.
#[test]
fn connection_pools_are_sized_by_littles_law() {
    let server = TestServer::start();
    let now = base_ms() + 600_000;
    let from = now - 1_200_000;
    let times: Vec<i64> = (0..=80).map(|k| from + k * 15_000).collect();
    let gauge = |v: f64| times.iter().map(|t| (*t, v)).collect::<Vec<_>>();
    let counter = |per_second: f64| {
        times
            .iter()
            .map(|t| (*t, 1000.0 + (t - from) as f64 / 1000.0 * per_second))
            .collect::<Vec<_>>()
    };
    let mut series: Vec<TestSeries> = Vec::new();
    // app-db: 10 connections, 4 in use: 4 checkouts a second held 1 s each.
    // reports-db: 5 of 5 in use, requests waiting 20 ms, timeouts.
    for (pool, max, used, checkouts, hold, pending, timeouts, wait) in [
        ("app-db", 10.0, 4.0, 4.0, 1.0, 0.0, 0.0, 0.0),
        ("reports-db", 5.0, 5.0, 10.0, 0.5, 3.0, 0.01, 0.02),
    ] {
        let p = ("db_client_connection_pool_name", pool);
        series.push((
            vec![("__name__", "db_client_connection_max"), p],
            gauge(max),
        ));
        series.push((
            vec![
                ("__name__", "db_client_connection_count"),
                p,
                ("db_client_connection_state", "used"),
            ],
            gauge(used),
        ));
        series.push((
            vec![
                ("__name__", "db_client_connection_count"),
                p,
                ("db_client_connection_state", "idle"),
            ],
            gauge(max - used),
        ));
        series.push((
            vec![("__name__", "db_client_connection_pending_requests"), p],
            gauge(pending),
        ));
        series.push((
            vec![("__name__", "db_client_connection_timeouts_total"), p],
            counter(timeouts),
        ));
        series.push((
            vec![
                ("__name__", "db_client_connection_use_time_seconds_count"),
                p,
            ],
            counter(checkouts),
        ));
        series.push((
            vec![("__name__", "db_client_connection_use_time_seconds_sum"), p],
            counter(checkouts * hold),
        ));
        series.push((
            vec![
                ("__name__", "db_client_connection_wait_time_seconds_count"),
                p,
            ],
            counter(checkouts),
        ));
        series.push((
            vec![
                ("__name__", "db_client_connection_wait_time_seconds_sum"),
                p,
            ],
            counter(checkouts * wait),
        ));
    }
    let (status, text) = post_remote_write(&server.url(""), remote_write_body(&series));
    assert_eq!(status, 204, "{text}");
    let report: Value = client()
        .get(server.url(&format!(
            "/api/v1/recommendations/database?start={}&end={}",
            from / 1000,
            now / 1000
        )))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let pools = report["connection_pools"].as_array().unwrap();
    let pool = |name: &str| {
        pools
            .iter()
            .find(|p| p["pool"] == name)
            .unwrap_or_else(|| panic!("{pools:#?}"))
    };
    let app = pool("app-db");
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() <= want * 0.02 + 1e-9;
    // Little's law: 4 checkouts a second × 1 s = 4 connections.
    assert!(close(&app["littles_law_mean"], 4.0), "{app:#}");
    assert!(close(&app["littles_law_busiest_5m"], 4.0), "{app:#}");
    assert_eq!(app["peak_used"], 4.0);
    assert_eq!(app["suggested_max"], 5);
    assert!(
        app["verdict"].as_str().unwrap().starts_with("oversized"),
        "{app:#}"
    );
    let reports = pool("reports-db");
    assert!(close(&reports["mean_wait_seconds"], 0.02), "{reports:#}");
    assert!(close(&reports["timeouts"], 12.0), "{reports:#}");
    assert_eq!(reports["pending_requests_max"], 3.0);
    assert!(
        reports["verdict"]
            .as_str()
            .unwrap()
            .starts_with("too small"),
        "{reports:#}"
    );
}

/// A real redis-server (Debian's) and redis-py under
/// opentelemetry-instrumentation-redis: the measured hit ratio per key
/// pattern equals the one the app counted itself.
#[test]
fn redis_hit_ratio_from_real_instrumentation() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = start_redis(dir.path());
    let server = TestServer::start();
    let out = run_python(
        "redis_app.py",
        &[
            ("OTLP_ENDPOINT", format!("http://{}", server.otlp_grpc)),
            ("REDIS_PORT", port.to_string()),
            ("RECORD_KEYS", "1".to_string()),
        ],
    );
    let app: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let reads = app["reads"].as_u64().unwrap();
    let report = wait_for(std::time::Duration::from_secs(20), || {
        let r: Value = client()
            .get(server.url("/api/v1/recommendations/cache"))
            .send()
            .ok()?
            .json()
            .ok()?;
        let product = r["redis"]
            .as_array()?
            .iter()
            .find(|p| p["pattern"] == "product:?")?
            .clone();
        let session = r["redis"]
            .as_array()?
            .iter()
            .find(|p| p["pattern"] == "session:?")?
            .clone();
        (product["gets"].as_u64()? == reads && session["sets"].as_u64()? == 10)
            .then_some((product, session))
    });
    let (product, session) =
        report.unwrap_or_else(|| panic!("the app's Redis spans did not arrive"));
    assert_eq!(product["misses"], app["misses"], "{product:#}");
    assert_eq!(product["hits"], app["hits"], "{product:#}");
    assert_eq!(session["keys_written_never_read"], 10);

    // Without the hook the instrumentation records `GET ?`: the same hits
    // and misses, under one pattern, and nothing about keys never read.
    let plain = TestServer::start();
    run_python(
        "redis_app.py",
        &[
            ("OTLP_ENDPOINT", format!("http://{}", plain.otlp_grpc)),
            ("REDIS_PORT", port.to_string()),
        ],
    );
    let all = wait_for(std::time::Duration::from_secs(20), || {
        let r: Value = client()
            .get(plain.url("/api/v1/recommendations/cache"))
            .send()
            .ok()?
            .json()
            .ok()?;
        let p = r["redis"]
            .as_array()?
            .iter()
            .find(|p| p["pattern"] == "(keys not recorded)")?
            .clone();
        (p["gets"].as_u64()? == reads && p["sets"].as_u64()? == app["misses"].as_u64()? + 10)
            .then_some(p)
    })
    .expect("the app's Redis spans arrive");
    assert_eq!(all["misses"], app["misses"], "{all:#}");
    assert_eq!(all["keys_written_never_read"], Value::Null);
}

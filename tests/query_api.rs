//! `/api/v1/query` and `/api/v1/query_range` over data written with
//! remote_write: Prometheus' shapes, errors and Grafana's health check.

mod common;

use common::*;
use serde_json::json;

fn seed(server: &TestServer) {
    let t0 = 1_700_000_000_000i64;
    let counter: Vec<(i64, f64)> = (0..=20)
        .map(|i| (t0 + i * 15_000, (i * 30) as f64))
        .collect();
    let body = remote_write_body(&[
        (
            vec![
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("code", "200"),
            ],
            counter.clone(),
        ),
        (
            vec![
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("code", "500"),
            ],
            counter.iter().map(|(t, v)| (*t, v / 10.0)).collect(),
        ),
        (
            vec![("__name__", "up"), ("job", "api")],
            vec![(t0 + 300_000, 1.0)],
        ),
    ]);
    assert_eq!(post_remote_write(&server.url(""), body).0, 204);
}

fn get(server: &TestServer, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = client().get(server.url(path)).query(params).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

#[test]
fn instant_and_range_queries() {
    let server = TestServer::start();
    seed(&server);
    // Grafana's health check
    let (status, body) = get(
        &server,
        "/api/v1/query",
        &[("query", "1+1"), ("time", "1700000300")],
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000300, "2"]}})
    );
    // Byte for byte what Prometheus writes: integral timestamps without a
    // fraction, milliseconds as three digits.
    let raw = client()
        .get(server.url("/api/v1/query"))
        .query(&[("query", "1+1"), ("time", "1700000300.25")])
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(
        raw,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000300.250,"2"]}}"#
    );
    let (_, body) = get(
        &server,
        "/api/v1/query",
        &[("query", "up"), ("time", "1700000300")],
    );
    assert_eq!(
        body["data"],
        json!({"resultType": "vector", "result": [{"metric": {"__name__": "up", "job": "api"}, "value": [1700000300, "1"]}]})
    );
    let (_, body) = get(
        &server,
        "/api/v1/query",
        &[
            ("query", "sum by (job) (rate(http_requests_total[1m]))"),
            ("time", "1700000300"),
        ],
    );
    let result = &body["data"]["result"][0];
    assert_eq!(result["metric"], json!({"job": "api"}));
    let rate: f64 = result["value"][1].as_str().unwrap().parse().unwrap();
    assert!((rate - 2.2).abs() < 1e-9, "{rate}");
    // range query: matrix sorted by labels, aligned steps
    let (status, body) = get(
        &server,
        "/api/v1/query_range",
        &[
            ("query", "http_requests_total"),
            ("start", "1700000000"),
            ("end", "1700000060"),
            ("step", "30s"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let series = body["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["metric"]["code"], "200");
    assert_eq!(
        series[0]["values"],
        json!([[1700000000, "0"], [1700000030, "60"], [1700000060, "120"]])
    );
    // a range selector in an instant query is a matrix
    let (_, body) = get(
        &server,
        "/api/v1/query",
        &[("query", "up[10m]"), ("time", "1700000300")],
    );
    assert_eq!(body["data"]["resultType"], "matrix");
    // POST form works like GET
    let body: serde_json::Value = client()
        .post(server.url("/api/v1/query"))
        .form(&[
            ("query", "count(http_requests_total)"),
            ("time", "1700000300"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["data"]["result"][0]["value"][1], "2");
}

#[test]
fn query_errors_are_prometheus_shaped() {
    let server = TestServer::start();
    seed(&server);
    let (status, body) = get(&server, "/api/v1/query", &[]);
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "bad_data");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("no expression found in input"));
    let (status, body) = get(&server, "/api/v1/query", &[("query", "sum(")]);
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\""),
        "{body}"
    );
    let (status, body) = get(
        &server,
        "/api/v1/query_range",
        &[("query", "up"), ("start", "1"), ("end", "2"), ("step", "0")],
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("zero or negative"));
    let (status, _) = get(
        &server,
        "/api/v1/query_range",
        &[
            ("query", "up[5m]"),
            ("start", "1"),
            ("end", "2"),
            ("step", "1"),
        ],
    );
    assert_eq!(status, 400);
    let (status, body) = get(
        &server,
        "/api/v1/query_range",
        &[
            ("query", "up"),
            ("start", "1"),
            ("end", "100000"),
            ("step", "1"),
        ],
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("11,000 points"));
    // many-to-many matching is an execution error (422)
    let (status, body) = get(
        &server,
        "/api/v1/query",
        &[
            ("query", "http_requests_total + on(job) http_requests_total"),
            ("time", "1700000300"),
        ],
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
}

#[test]
fn query_limits_stop_bombs_and_the_server_stays_healthy() {
    let server = TestServer::start_with(&[("OXEYE_QUERY__MAX_SAMPLES", "20")]);
    seed(&server);
    let (status, body) = get(
        &server,
        "/api/v1/query_range",
        &[
            ("query", "http_requests_total"),
            ("start", "1700000000"),
            ("end", "1700000300"),
            ("step", "15"),
        ],
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("too many samples"),
        "{body}"
    );
    let (status, body) = get(
        &server,
        "/api/v1/query",
        &[("query", "up"), ("time", "1700000300")],
    );
    assert_eq!(status, 200);
    assert_eq!(body["data"]["result"][0]["value"][1], "1");
}

#[test]
fn status_and_utility_endpoints() {
    let server = TestServer::start();
    seed(&server);
    let (status, body) = get(&server, "/api/v1/status/buildinfo", &[]);
    assert_eq!(status, 200);
    assert!(
        body["data"]["version"].as_str().unwrap().starts_with("3."),
        "{body}"
    );
    let (_, body) = get(&server, "/api/v1/status/runtimeinfo", &[]);
    // The tests' retention (FIXED_TIME_RETENTION), as Oxeye prints durations.
    let retention = humantime::parse_duration(FIXED_TIME_RETENTION).unwrap();
    assert_eq!(
        body["data"]["storageRetention"],
        humantime::format_duration(retention).to_string()
    );
    let (_, body) = get(&server, "/api/v1/status/flags", &[]);
    assert_eq!(body["data"]["query.lookback_delta"], "5m");
    let (_, body) = get(&server, "/api/v1/status/config", &[]);
    assert!(body["data"]["yaml"].as_str().unwrap().contains("[storage]"));
    let (_, body) = get(&server, "/api/v1/status/tsdb", &[]);
    assert_eq!(body["data"]["headStats"]["numSeries"], 3);
    assert_eq!(
        body["data"]["seriesCountByMetricName"][0],
        json!({"name": "http_requests_total", "value": 2})
    );
    let (_, body) = get(&server, "/api/v1/format_query", &[("query", "foo/bar")]);
    assert_eq!(body, json!({"status": "success", "data": "foo / bar"}));
    let (_, body) = get(
        &server,
        "/api/v1/parse_query",
        &[("query", "up{job=\"api\"}")],
    );
    assert_eq!(body["data"]["type"], "vectorSelector", "{body}");
    let (status, body) = get(&server, "/api/v1/format_query", &[("query", "foo/")]);
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "bad_data");
}

#[test]
fn query_timeout_is_a_503_and_the_server_stays_healthy() {
    // A deadline that has passed before evaluation starts.
    let server = TestServer::start_with(&[("OXEYE_QUERY__TIMEOUT", "1ns")]);
    seed(&server);
    let (status, body) = get(
        &server,
        "/api/v1/query_range",
        &[
            ("query", "sum(rate(http_requests_total[1m]))"),
            ("start", "1700000000"),
            ("end", "1700000300"),
            ("step", "15"),
        ],
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorType"], "timeout");
    assert!(
        body["error"].as_str().unwrap().contains("query timed out"),
        "{body}"
    );
    let healthy = client().get(server.url("/-/healthy")).send().unwrap();
    assert_eq!(healthy.status().as_u16(), 200);
}

#[test]
fn concurrent_queries_beyond_the_limit_wait_their_turn() {
    let server = TestServer::start_with(&[("OXEYE_QUERY__MAX_CONCURRENT", "1")]);
    seed(&server);
    let url = server.url("/api/v1/query");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body: serde_json::Value = client()
                    .get(&url)
                    .query(&[
                        ("query", "count(http_requests_total)"),
                        ("time", "1700000300"),
                    ])
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                body["data"]["result"][0]["value"][1]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), "2");
    }
}

/// The value of an unlabelled gauge in `/metrics`.
fn self_gauge(server: &TestServer, name: &str) -> i64 {
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
fn a_query_keeps_its_slot_until_evaluation_ends_and_others_wait() {
    let server = TestServer::start_with(&[
        ("OXEYE_QUERY__MAX_CONCURRENT", "1"),
        ("OXEYE_QUERY__TIMEOUT", "60s"),
    ]);
    seed(&server);
    // A slow range query (3001 steps, each a quantile over 3600 shuffled
    // points: seconds of work) whose client gives up after 200 ms.
    let slow = server.url("/api/v1/query_range");
    let impatient = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(&slow)
        .query(&[
            (
                "query",
                "quantile_over_time(0.5, vector(time() * 7919 % 1000)[1h:1s])",
            ),
            ("start", "0"),
            ("end", "3000"),
            ("step", "1"),
        ])
        .send();
    assert!(gave_up.is_err(), "the slow query answered within 200 ms");
    // Its evaluation goes on, holding the only slot.
    assert_eq!(self_gauge(&server, "oxeye_queries_running"), 1);
    // A second query waits for it, and is answered once it is done.
    let url = server.url("/api/v1/query");
    let waiting = std::thread::spawn(move || {
        let body: serde_json::Value = client()
            .get(&url)
            .query(&[
                ("query", "count(http_requests_total)"),
                ("time", "1700000300"),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        body["data"]["result"][0]["value"][1].clone()
    });
    let seen_waiting = wait_for(std::time::Duration::from_secs(30), || {
        (self_gauge(&server, "oxeye_queries_waiting") == 1).then_some(())
    });
    assert!(
        seen_waiting.is_some(),
        "the second query never waited for the slot"
    );
    assert_eq!(waiting.join().unwrap(), "2");
    let idle = wait_for(std::time::Duration::from_secs(60), || {
        let running = self_gauge(&server, "oxeye_queries_running");
        let waiting = self_gauge(&server, "oxeye_queries_waiting");
        (running == 0 && waiting == 0).then_some(())
    });
    assert!(idle.is_some(), "slots were not released");
}

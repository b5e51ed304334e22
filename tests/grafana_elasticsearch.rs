//! Requests shaped exactly as Grafana's Elasticsearch data source sends
//! them (pkg/tsdb/elasticsearch: pipeline metrics as siblings inside the
//! innermost bucket aggregation, `filters` of `query_string`s, calendar
//! intervals with a `time_zone`, `top_metrics`, `rate`, the logs query's
//! highlighting and nanosecond `fields`), answered with the values
//! Elasticsearch computes, worked out by hand below.

mod common;

use common::*;
use serde_json::{json, Value};

fn start() -> TestServer {
    TestServer::start_with(&[("OXEYE_LOGS__RETENTION", "36500d")])
}

fn bulk(server: &TestServer, docs: &[Value]) {
    let mut body = String::new();
    for doc in docs {
        body.push_str("{\"index\":{\"_index\":\"logs\"}}\n");
        body.push_str(&doc.to_string());
        body.push('\n');
    }
    let response = client()
        .post(format!(
            "http://{}/_bulk?refresh=true",
            server.elasticsearch
        ))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    let acked: Value = response.json().unwrap();
    assert_eq!(acked["errors"], false, "{acked}");
}

fn search(server: &TestServer, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!("http://{}/logs/_search", server.elasticsearch))
        .json(&body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

fn ok(server: &TestServer, body: Value) -> Value {
    let (status, result) = search(server, body);
    assert_eq!(status, 200, "{result}");
    result
}

/// Grafana's time filter and query string around `aggs`.
fn grafana(from: i64, to: i64, query: &str, aggs: Value) -> Value {
    json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": from, "lte": to, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": query}}
        ]}},
        "aggs": aggs
    })
}

fn histogram(from: i64, to: i64, interval: &str, aggs: Value) -> Value {
    json!({"date_histogram": {
        "field": "@timestamp", "fixed_interval": interval, "min_doc_count": 0,
        "extended_bounds": {"min": from, "max": to}, "format": "epoch_millis"
    }, "aggs": aggs})
}

/// `buckets[i][name].value` for every bucket: `None` when the bucket has no
/// such key, `Some(None)` for a `null` value.
fn column(buckets: &[Value], name: &str) -> Vec<Option<Option<f64>>> {
    buckets
        .iter()
        .map(|b| b.get(name).map(|v| v["value"].as_f64()))
        .collect()
}

/// 2024-05-01T10:00:00Z.
const T0: i64 = 1_714_557_600_000;
const MINUTE: i64 = 60_000;

/// Five one-minute buckets: latencies [10], [20, 30], [], [40], [50, 70, 90];
/// status 500 from 40 on.
fn minute_data(server: &TestServer) {
    let mut docs = Vec::new();
    for (bucket, latencies) in [
        (0, vec![10]),
        (1, vec![20, 30]),
        (3, vec![40]),
        (4, vec![50, 70, 90]),
    ] {
        for (i, latency) in latencies.into_iter().enumerate() {
            docs.push(json!({
                "@timestamp": T0 + bucket * MINUTE + i as i64 * 10_000,
                "latency": latency,
                "status": if latency >= 40 { 500 } else { 200 },
                "message": format!("request took {latency} ms"),
            }));
        }
    }
    bulk(server, &docs);
}

#[test]
fn pipeline_aggregations_as_grafana_sends_them() {
    let server = start();
    minute_data(&server);
    let (from, to) = (T0, T0 + 5 * MINUTE - 1);
    let aggs = json!({"2": histogram(from, to, "1m", json!({
        "1": {"avg": {"field": "latency"}},
        "3": {"derivative": {"buckets_path": "1"}},
        "4": {"cumulative_sum": {"buckets_path": "_count"}},
        "5": {"moving_fn": {"buckets_path": "1", "window": 2, "script": "MovingFunctions.unweightedAvg(values)"}},
        "6": {"moving_avg": {"buckets_path": "1", "window": 2.0, "model": "simple", "predict": 0.0}},
        "7": {"serial_diff": {"buckets_path": "1", "lag": 1.0}},
        "8": {"bucket_script": {"buckets_path": {"var1": "1", "var2": "_count"}, "script": "params.var1 * params.var2"}},
        "9": {"rate": {"unit": "second"}},
        "10": {"rate": {"field": "latency", "unit": "minute"}},
        "11": {"derivative": {"buckets_path": "3", "gap_policy": "insert_zeros"}},
        "12": {"moving_fn": {"buckets_path": "1", "window": 3, "script": "MovingFunctions.stdDev(values, MovingFunctions.unweightedAvg(values))"}},
        "13": {"moving_fn": {"buckets_path": "1", "window": 2, "shift": "",
            "script": {"source": "MovingFunctions.ewma(values, params.alpha)", "params": {"alpha": 0.25}}}},
    }))});
    let result = ok(&server, grafana(from, to, "*", aggs));
    let buckets = result["aggregations"]["2"]["buckets"].as_array().unwrap();
    let keys: Vec<i64> = buckets.iter().map(|b| b["key"].as_i64().unwrap()).collect();
    assert_eq!(keys, (0..5).map(|i| T0 + i * MINUTE).collect::<Vec<_>>());
    assert_eq!(buckets[1]["key_as_string"], (T0 + MINUTE).to_string());
    let v = |x: f64| Some(Some(x));
    let null = Some(None);
    // avg per bucket: 10, 25, (empty), 40, 70.
    assert_eq!(
        column(buckets, "1"),
        vec![v(10.0), v(25.0), null, v(40.0), v(70.0)]
    );
    // Derivative: none in the first bucket; a gap (skip) nulls both sides.
    assert_eq!(
        column(buckets, "3"),
        vec![None, v(15.0), null, null, v(30.0)]
    );
    // Cumulative doc count: 1, 3, 3, 4, 7.
    assert_eq!(
        column(buckets, "4"),
        vec![v(1.0), v(3.0), v(3.0), v(4.0), v(7.0)]
    );
    // moving_fn over the previous two non-gap values; nothing in a gap.
    assert_eq!(
        column(buckets, "5"),
        vec![null, v(10.0), None, v(17.5), v(32.5)]
    );
    assert_eq!(
        column(buckets, "6"),
        vec![None, v(10.0), None, v(17.5), v(32.5)]
    );
    assert_eq!(
        column(buckets, "7"),
        vec![None, v(15.0), None, None, v(30.0)]
    );
    // avg × count = the bucket's sum; skipped where avg is missing.
    assert_eq!(
        column(buckets, "8"),
        vec![v(10.0), v(50.0), None, v(40.0), v(210.0)]
    );
    // Documents per second in one-minute buckets; latency summed per minute.
    let per_second: Vec<_> = [1.0, 2.0, 0.0, 1.0, 3.0]
        .iter()
        .map(|c| v(c / 60.0))
        .collect();
    assert_eq!(column(buckets, "9"), per_second);
    assert_eq!(
        column(buckets, "10"),
        vec![v(10.0), v(50.0), v(0.0), v(40.0), v(210.0)]
    );
    // A derivative of a derivative, gaps as zeros: 3's values are
    // [-, 15, null, null, 30] → [-, -, 0-15, 0-0, 30-0].
    assert_eq!(
        column(buckets, "11"),
        vec![None, None, v(-15.0), v(0.0), v(30.0)]
    );
    // ewma with the script's alpha of 0.25 over the previous two values.
    assert_eq!(
        column(buckets, "13"),
        vec![null, v(10.0), None, v(13.75), v(28.75)]
    );
    // Population standard deviation of the previous three values.
    let sd = column(buckets, "12");
    assert_eq!(sd[1], v(0.0));
    let expected = (((10.0f64 - 17.5).powi(2) + (25.0f64 - 17.5).powi(2)) / 2.0).sqrt();
    assert!((sd[3].unwrap().unwrap() - expected).abs() < 1e-9, "{sd:?}");

    // Refusals: 400 with Elasticsearch's error types, never a panic.
    for (aggs, kind, needle) in [
        (
            json!({"2": histogram(from, to, "1m", json!({"3": {"derivative": {"buckets_path": "9"}}}))}),
            "action_request_validation_exception",
            "No aggregation found for path [9]",
        ),
        (
            json!({"2": histogram(from, to, "1m", json!({"1": {"avg": {"field": "latency"}},
                "3": {"bucket_script": {"buckets_path": {"a": "1"}, "script": "doc['latency'].value * 2"}}}))}),
            "script_exception",
            "unsupported identifier [doc]",
        ),
        (
            json!({"2": histogram(from, to, "1m", json!({"1": {"avg": {"field": "latency"}},
                "3": {"bucket_script": {"buckets_path": {"a": "1"}, "script": "(".repeat(50) + "params.a" + &")".repeat(50)}}}))}),
            "script_exception",
            "nested deeper",
        ),
        (
            json!({"3": {"derivative": {"buckets_path": "_count"}}}),
            "action_request_validation_exception",
            "must have a histogram",
        ),
        (
            json!({"2": histogram(from, to, "1m", json!({"3": {"moving_fn": {"buckets_path": "_count", "window": 2, "script": "MovingFunctions.holtWinters(values)"}}}))}),
            "script_exception",
            "unknown function",
        ),
        (
            json!({"2": histogram(from, to, "1m", json!({
                "3": {"derivative": {"buckets_path": "4"}}, "4": {"derivative": {"buckets_path": "3"}}}))}),
            "action_request_validation_exception",
            "depends on itself",
        ),
    ] {
        let (status, result) = search(&server, grafana(from, to, "*", aggs));
        assert_eq!(status, 400, "{result}");
        assert_eq!(result["error"]["type"], kind, "{result}");
        let reason = result["error"]["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "{reason}");
    }
}

#[test]
fn filters_top_metrics_and_nested_buckets() {
    let server = start();
    minute_data(&server);
    let (from, to) = (T0, T0 + 5 * MINUTE - 1);
    // Grafana: a Filters bucket aggregation, then a Date Histogram.
    let query_string = |q: &str| json!({"query_string": {"query": q, "analyze_wildcard": true}});
    let aggs = json!({"3": {
        "filters": {"filters": {"status:500": query_string("status:500"), "status:200": query_string("status:200")}},
        "aggs": {"2": histogram(from, to, "1m", json!({
            "1": {"max": {"field": "latency"}},
            "4": {"top_metrics": {"metrics": [{"field": "latency"}], "size": 1, "sort": [{"@timestamp": "desc"}]}},
        }))}
    }});
    let result = ok(&server, grafana(from, to, "*", aggs));
    let buckets = &result["aggregations"]["3"]["buckets"];
    assert_eq!(buckets["status:500"]["doc_count"], 4, "{buckets}");
    assert_eq!(buckets["status:200"]["doc_count"], 3, "{buckets}");
    let counts = |key: &str| -> Vec<i64> {
        buckets[key]["2"]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["doc_count"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(counts("status:500"), vec![0, 0, 0, 1, 3]);
    assert_eq!(counts("status:200"), vec![1, 2, 0, 0, 0]);
    let errors = buckets["status:500"]["2"]["buckets"].as_array().unwrap();
    assert_eq!(errors[4]["1"]["value"], 90.0);
    // The latest record of the bucket: 90 ms at 10:04:20.
    let top = &errors[4]["4"]["top"];
    assert_eq!(top[0]["metrics"]["latency"], 90.0, "{top}");
    assert_eq!(top[0]["sort"][0], "2024-05-01T10:04:20.000Z", "{top}");
    let ok_buckets = buckets["status:200"]["2"]["buckets"].as_array().unwrap();
    assert_eq!(ok_buckets[1]["4"]["top"][0]["metrics"]["latency"], 30.0);
    assert_eq!(ok_buckets[2]["4"]["top"], json!([]));

    // Filters at the top level with an anonymous (array) form.
    let result = ok(
        &server,
        grafana(
            from,
            to,
            "*",
            json!({"f": {"filters": {"filters": [query_string("latency:>=50"), {"term": {"status": 200}}]}}}),
        ),
    );
    let anonymous = result["aggregations"]["f"]["buckets"].as_array().unwrap();
    assert_eq!(anonymous[0]["doc_count"], 3);
    assert_eq!(anonymous[1]["doc_count"], 3);

    let (status, result) = search(
        &server,
        grafana(
            from,
            to,
            "*",
            json!({"f": {"filters": {"filters": {"bad": query_string("status:(")}}}}),
        ),
    );
    assert_eq!(status, 400, "{result}");
    let (status, result) = search(
        &server,
        grafana(
            from,
            to,
            "*",
            json!({"t": {"top_metrics": {"metrics": [{"field": "latency"}], "sort": {"latency": "desc"}}}}),
        ),
    );
    assert_eq!(status, 400, "{result}");
    assert!(result["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("@timestamp"));
}

fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn calendar_intervals_in_a_time_zone() {
    let server = start();
    // In Berlin: 15 Jan; 1 Feb 00:30 (31 Jan in UTC); 1 Apr 00:30 (31 Mar
    // in UTC); 10 May.
    let times = [
        "2024-01-15T12:00:00Z",
        "2024-01-31T23:30:00Z",
        "2024-03-31T22:30:00Z",
        "2024-05-10T08:00:00Z",
    ];
    let docs: Vec<Value> = times
        .iter()
        .map(|t| json!({"@timestamp": t, "bytes": 100, "message": "x"}))
        .collect();
    bulk(&server, &docs);
    let (from, to) = (
        ms("2024-01-01T00:00:00+01:00"),
        ms("2024-05-31T23:59:59.999+02:00"),
    );
    let calendar = |interval: &str, zone: &str, format: Option<&str>| {
        let mut h = json!({
            "field": "@timestamp", "calendar_interval": interval, "time_zone": zone,
            "min_doc_count": 0, "extended_bounds": {"min": from, "max": to}
        });
        if let Some(f) = format {
            h["format"] = json!(f);
        }
        json!({"2": {"date_histogram": h, "aggs": {"r": {"rate": {"unit": "day"}}}}})
    };
    let result = ok(
        &server,
        grafana(
            from,
            to,
            "*",
            calendar("1M", "Europe/Berlin", Some("epoch_millis")),
        ),
    );
    let buckets = result["aggregations"]["2"]["buckets"].as_array().unwrap();
    let keys: Vec<i64> = buckets.iter().map(|b| b["key"].as_i64().unwrap()).collect();
    assert_eq!(
        keys,
        vec![
            ms("2024-01-01T00:00:00+01:00"),
            ms("2024-02-01T00:00:00+01:00"),
            ms("2024-03-01T00:00:00+01:00"),
            ms("2024-04-01T00:00:00+02:00"),
            ms("2024-05-01T00:00:00+02:00"),
        ]
    );
    assert_eq!(buckets[3]["key_as_string"], keys[3].to_string());
    let counts: Vec<i64> = buckets
        .iter()
        .map(|b| b["doc_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![1, 1, 0, 1, 1]);
    // Documents per day of each local month: 31, 29 (2024 is a leap year), 30, 31 days.
    let rates: Vec<f64> = buckets
        .iter()
        .map(|b| b["r"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(
        rates,
        vec![1.0 / 31.0, 1.0 / 29.0, 0.0, 1.0 / 30.0, 1.0 / 31.0]
    );

    // An offset zone, and keys printed in it when no format is given.
    let result = ok(
        &server,
        grafana(from, to, "*", calendar("month", "+02:00", None)),
    );
    let buckets = result["aggregations"]["2"]["buckets"].as_array().unwrap();
    assert_eq!(buckets[0]["key_as_string"], "2024-01-01T00:00:00.000+02:00");
    assert_eq!(buckets[0]["key"], ms("2024-01-01T00:00:00+02:00"));
    let counts: Vec<i64> = buckets
        .iter()
        .map(|b| b["doc_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![1, 1, 0, 1, 1], "{buckets:?}");

    // Quarters and years in UTC: the Berlin-February record is January's.
    // The extended bounds start at 2023-12-31T23:00Z, so the last quarter
    // (year) of 2023 is there too, empty, as Elasticsearch prints it.
    let result = ok(&server, grafana(from, to, "*", calendar("1q", "UTC", None)));
    let buckets = result["aggregations"]["2"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3, "{buckets:?}");
    assert_eq!(buckets[0]["key_as_string"], "2023-10-01T00:00:00.000Z");
    assert_eq!(buckets[0]["doc_count"], 0);
    assert_eq!(buckets[1]["key_as_string"], "2024-01-01T00:00:00.000Z");
    assert_eq!(buckets[1]["doc_count"], 3);
    assert_eq!(buckets[2]["key"], ms("2024-04-01T00:00:00Z"));
    assert_eq!(buckets[2]["doc_count"], 1);
    // Quarterly buckets' rate per day: a quarter of 91 days (Q2).
    assert_eq!(buckets[2]["r"]["value"], 1.0 / 91.0);
    let result = ok(&server, grafana(from, to, "*", calendar("1y", "UTC", None)));
    let buckets = result["aggregations"]["2"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 2);
    assert_eq!(buckets[1]["key_as_string"], "2024-01-01T00:00:00.000Z");
    assert_eq!(buckets[1]["doc_count"], 4);

    // Days in Berlin around the spring change: 31 March is 23 hours long.
    let (from, to) = (
        ms("2024-03-30T00:00:00+01:00"),
        ms("2024-04-01T23:59:59+02:00"),
    );
    let h = json!({"2": {"date_histogram": {"field": "@timestamp", "calendar_interval": "1d",
        "time_zone": "Europe/Berlin", "min_doc_count": 0, "extended_bounds": {"min": from, "max": to},
        "format": "epoch_millis"}, "aggs": {"r": {"rate": {"unit": "hour"}}}}});
    let result = ok(&server, grafana(from, to, "*", h));
    let buckets = result["aggregations"]["2"]["buckets"].as_array().unwrap();
    let keys: Vec<i64> = buckets.iter().map(|b| b["key"].as_i64().unwrap()).collect();
    assert_eq!(
        keys,
        vec![
            ms("2024-03-30T00:00:00+01:00"),
            ms("2024-03-31T00:00:00+01:00"),
            ms("2024-04-01T00:00:00+02:00"),
        ]
    );
    assert_eq!(buckets[2]["doc_count"], 1);
    assert_eq!(buckets[2]["r"]["value"], 1.0 / 24.0);

    // An offset shifts local days: Berlin days starting at 06:00.
    let h = json!({"2": {"date_histogram": {"field": "@timestamp", "calendar_interval": "1d",
        "time_zone": "Europe/Berlin", "offset": "+6h", "min_doc_count": 1, "format": "epoch_millis"}}});
    let result = ok(&server, grafana(from, to, "*", h));
    let buckets = result["aggregations"]["2"]["buckets"].as_array().unwrap();
    // 1 April 00:30 Berlin belongs to the day of 31 March; as in
    // Elasticsearch the offset is added after rounding as a fixed duration,
    // so on that 23-hour day the bucket starts at local midnight + 6 h =
    // 07:00 summer time.
    assert_eq!(
        buckets[0]["key"],
        ms("2024-03-31T07:00:00+02:00"),
        "{buckets:?}"
    );

    // A range query's dates in a time zone: April in Berlin holds the
    // record of 31 March 22:30 UTC; April in UTC holds none.
    let april = |zone: Option<&str>| {
        let mut range = json!({"gte": "2024-04-01", "lt": "2024-05-01"});
        if let Some(zone) = zone {
            range["time_zone"] = json!(zone);
        }
        let result = ok(&server, json!({"query": {"range": {"@timestamp": range}}}));
        result["hits"]["total"]["value"].as_i64().unwrap()
    };
    assert_eq!(april(Some("Europe/Berlin")), 1);
    assert_eq!(april(Some("+03:00")), 1);
    assert_eq!(april(Some("+01:00")), 0);
    assert_eq!(april(None), 0);
    assert_eq!(april(Some("UTC")), 0);
    let (status, result) = search(
        &server,
        json!({"query": {"range": {"@timestamp": {"gte": "2024-04-01", "time_zone": "Moon/Base"}}}}),
    );
    assert_eq!(status, 400, "{result}");
    assert!(result["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("Moon/Base"));

    // Unknown zones and intervals are 400s naming them.
    for (h, needle) in [
        (
            json!({"calendar_interval": "1M", "time_zone": "Mars/Olympus"}),
            "Mars/Olympus",
        ),
        (json!({"calendar_interval": "5M"}), "[5M]"),
    ] {
        let mut h = h;
        h["field"] = json!("@timestamp");
        let (status, result) = search(
            &server,
            grafana(from, to, "*", json!({"2": {"date_histogram": h}})),
        );
        assert_eq!(status, 400, "{result}");
        assert!(
            result["error"]["reason"].as_str().unwrap().contains(needle),
            "{result}"
        );
    }
}

#[test]
fn logs_query_highlights_and_nanosecond_fields() {
    let server = start();
    bulk(
        &server,
        &[
            json!({"@timestamp": "2024-05-01T10:00:00.123456789Z", "message": "disk error on sda", "level": "error"}),
            json!({"@timestamp": "2024-05-01T10:00:01.500000000Z", "message": "all good", "level": "info"}),
            json!({"@timestamp": "2024-05-01T10:00:02.120000000Z", "message": "Error: timeout (error 7)", "level": "warn"}),
        ],
    );
    let (from, to) = (T0, T0 + 10_000);
    // Grafana's logs query (processLogsQuery), with the newer `fields`
    // entry asking for nanoseconds.
    let body = json!({
        "size": 500,
        "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": from, "lte": to, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": "error"}}
        ]}},
        "sort": {"@timestamp": {"order": "desc", "unmapped_type": "boolean"}, "_doc": {"order": "desc"}},
        "docvalue_fields": ["@timestamp"],
        "script_fields": {},
        "fields": [{"field": "@timestamp", "format": "strict_date_optional_time_nanos"}],
        "highlight": {"fields": {"*": {}}, "pre_tags": ["@HIGHLIGHT@"], "post_tags": ["@/HIGHLIGHT@"], "fragment_size": 2147483647},
        "aggs": {"1": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1000ms", "min_doc_count": 0,
            "extended_bounds": {"min": from, "max": to}, "format": "epoch_millis"}}}
    });
    let result = ok(&server, body);
    let hits = result["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{result}");
    // Newest first.
    assert_eq!(
        hits[0]["fields"]["@timestamp"],
        json!(["2024-05-01T10:00:02.120Z"])
    );
    assert_eq!(
        hits[1]["fields"]["@timestamp"],
        json!(["2024-05-01T10:00:00.123456789Z"])
    );
    assert_eq!(
        hits[0]["highlight"]["message"],
        json!(["@HIGHLIGHT@Error@/HIGHLIGHT@: timeout (@HIGHLIGHT@error@/HIGHLIGHT@ 7)"])
    );
    assert!(hits[0]["highlight"].get("level").is_none(), "{}", hits[0]);
    assert_eq!(
        hits[1]["highlight"],
        json!({"message": ["disk @HIGHLIGHT@error@/HIGHLIGHT@ on sda"], "level": ["@HIGHLIGHT@error@/HIGHLIGHT@"]})
    );
    let counts: Vec<i64> = result["aggregations"]["1"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["doc_count"].as_i64().unwrap())
        .collect();
    assert_eq!(&counts[..3], &[1, 0, 1]);

    // The older request: docvalue_fields alone print milliseconds; a field
    // query highlights its field only.
    let result = ok(
        &server,
        json!({"query": {"query_string": {"query": "message:timeout"}},
            "docvalue_fields": ["@timestamp"],
            "highlight": {"fields": {"*": {}}, "pre_tags": ["<b>"], "post_tags": ["</b>"]}}),
    );
    let hit = &result["hits"]["hits"][0];
    assert_eq!(
        hit["fields"]["@timestamp"],
        json!(["2024-05-01T10:00:02.120Z"])
    );
    assert_eq!(
        hit["highlight"],
        json!({"message": ["Error: <b>timeout</b> (error 7)"]})
    );
    let (status, result) = search(
        &server,
        json!({"highlight": {"fields": {"*": {}}, "fragment_size": "big"}}),
    );
    assert_eq!(status, 400, "{result}");
}

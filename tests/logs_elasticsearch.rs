//! The Elasticsearch-compatible API driven by real clients: the official
//! Python client (8.x and 9.x, 100k documents through helpers.bulk, then
//! searches and aggregations checked against answers the script computes),
//! opensearch-py, and raw HTTP for the error shapes shippers depend on.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{client, run_python, TestServer};
use serde_json::{json, Value};

/// Where scripts/test installs each major of the `elasticsearch` package.
fn es_client_path(major: u32) -> PathBuf {
    let var = format!("OXEYE_PY_ES{major}");
    std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(format!(".cache/oxeye-py/es{major}"))
        })
}

fn run_es_client(major: u32) {
    let path = es_client_path(major);
    assert!(
        path.join("elasticsearch").is_dir(),
        "elasticsearch {major}.x is not installed in {}; run scripts/test, which installs it",
        path.display()
    );
    let server = TestServer::start();
    let out = run_python(
        "es_client.py",
        &[
            ("ES_URL", format!("http://{}", server.elasticsearch)),
            ("PYTHONPATH", path.display().to_string()),
        ],
    );
    let summary: Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
    assert!(
        summary["client"]
            .as_str()
            .unwrap()
            .starts_with(&major.to_string()),
        "{summary}"
    );
    assert_eq!(summary["docs"], 100_000);
    eprintln!("{summary}");
}

#[test]
fn elasticsearch_py_8() {
    run_es_client(8);
}

#[test]
fn elasticsearch_py_9() {
    run_es_client(9);
}

#[test]
fn opensearch_py() {
    let server = TestServer::start();
    run_python(
        "opensearch_client.py",
        &[("ES_URL", format!("http://{}", server.elasticsearch))],
    );
}

fn es(server: &TestServer, path: &str) -> String {
    format!("http://{}{}", server.elasticsearch, path)
}

#[test]
fn shipper_handshake_and_error_shapes() {
    let server = TestServer::start();
    let http = client();
    // Beats/Logstash start-up: GET /, HEAD /, license, templates, ILM, health.
    let root = http.get(es(&server, "/")).send().unwrap();
    assert_eq!(root.headers()["x-elastic-product"], "Elasticsearch");
    let root: Value = root.json().unwrap();
    assert_eq!(root["version"]["build_flavor"], "default");
    assert_eq!(http.head(es(&server, "/")).send().unwrap().status(), 200);
    let health: Value = http
        .get(es(&server, "/_cluster/health?wait_for_status=yellow"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "green");
    assert_eq!(
        http.head(es(&server, "/_index_template/filebeat"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let put = http
        .put(es(&server, "/_index_template/filebeat"))
        .json(&json!({"index_patterns": ["filebeat-*"], "template": {}}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(
        http.head(es(&server, "/_index_template/filebeat"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let got: Value = http
        .get(es(&server, "/_index_template/filebeat"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got["index_templates"][0]["name"], "filebeat");
    assert_eq!(
        http.put(es(&server, "/_ilm/policy/filebeat"))
            .json(&json!({"policy": {}}))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(es(&server, "/_license")).send().unwrap().status(),
        200
    );

    // Filebeat's bulk: application/json + gzip + filter_path.
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut body = String::new();
    for i in 0..10 {
        body.push_str("{\"create\":{\"_index\":\"filebeat-8\"}}\n");
        body.push_str(&format!(
            "{{\"@timestamp\":\"{now}\",\"message\":\"line {i}\",\"log\":{{\"level\":\"info\"}}}}\n"
        ));
    }
    body.push_str("{\"create\":{\"_index\":\"filebeat-8\"}}\n{\"@timestamp\": oops}\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let response = http
        .post(es(
            &server,
            "/_bulk?filter_path=errors,items.*.error,items.*.status&refresh=true",
        ))
        .header("content-type", "application/json; charset=UTF-8")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    let result: Value = response.json().unwrap();
    assert_eq!(result["errors"], true);
    let items = result["items"].as_array().unwrap();
    assert_eq!(items.len(), 11);
    assert!(items[..10].iter().all(|i| i["create"]["status"] == 201));
    assert_eq!(items[10]["create"]["status"], 400);
    assert_eq!(
        items[10]["create"]["error"]["type"],
        "document_parsing_exception"
    );
    let count: Value = http
        .get(es(&server, "/filebeat-*/_count"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(count["count"], 10);

    // A malformed action line fails the request, naming the line.
    let bad = http
        .post(es(&server, "/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body("{\"index\":{\"_index\":\"x\"}}\n{}\nnot-json\n")
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().unwrap();
    assert_eq!(bad["error"]["type"], "illegal_argument_exception");
    assert!(bad["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("line [3]"));
    assert_eq!(bad["status"], 400);

    // Over the body limit: 413, nothing stored.
    let limited = TestServer::start_with(&[("OXEYE_LIMITS__MAX_BODY_SIZE", "2KiB")]);
    let big =
        "{\"index\":{\"_index\":\"x\"}}\n{\"m\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n"
            .repeat(100);
    let response = http
        .post(es(&limited, "/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body(big)
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    let err: Value = response.json().unwrap();
    assert_eq!(err["error"]["type"], "content_too_long_exception");
    assert_eq!(err["status"], 413);

    // Unsupported clauses and aggregations are named in a 400.
    for (body, needle) in [
        (json!({"query": {"fuzzy": {"m": "x"}}}), "fuzzy"),
        (
            json!({"aggs": {"a": {"geohash_grid": {"field": "p"}}}}),
            "geohash_grid",
        ),
        (json!({"collapse": {"field": "x"}}), "collapse"),
    ] {
        let response = http
            .post(es(&server, "/filebeat-8/_search"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let err: Value = response.json().unwrap();
        assert!(
            err["error"]["reason"].as_str().unwrap().contains(needle),
            "{err}"
        );
        assert!(err["error"]["root_cause"].is_array());
    }

    // Grafana: _msearch with a Lucene filter and a date histogram, _mapping, _field_caps.
    let start = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let end = start + 7_200_000;
    let msearch = format!(
        "{}\n{}\n",
        json!({"search_type": "query_then_fetch", "ignore_unavailable": true, "index": "filebeat-*"}),
        json!({"size": 0, "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": start, "lte": end, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": "log.level:info AND message:line"}}]}},
            "aggs": {"2": {"date_histogram": {"field": "@timestamp", "min_doc_count": 0,
                "extended_bounds": {"min": start, "max": end}, "format": "epoch_millis", "fixed_interval": "1h"}}}})
    );
    let response: Value = http
        .post(es(&server, "/_msearch?max_concurrent_shard_requests=5"))
        .header("content-type", "application/x-ndjson")
        .body(msearch)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let buckets = response["responses"][0]["aggregations"]["2"]["buckets"]
        .as_array()
        .unwrap();
    assert_eq!(buckets.len(), 3, "{response}");
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["doc_count"].as_u64().unwrap())
            .sum::<u64>(),
        10
    );
    let mapping: Value = http
        .get(es(&server, "/filebeat-8/_mapping"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        mapping["filebeat-8"]["mappings"]["properties"]["@timestamp"]["type"],
        "date"
    );
    assert_eq!(
        mapping["filebeat-8"]["mappings"]["properties"]["log"]["properties"]["level"]["type"],
        "text"
    );
    assert_eq!(
        http.get(es(&server, "/nope/_mapping"))
            .send()
            .unwrap()
            .status(),
        404
    );

    // Oxeye's own search API over the same records.
    let found: Value = http
        .get(server.url("/api/v1/logs/search?query=message:line&limit=3"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found["data"]["total"], 10);
    assert_eq!(found["data"]["records"].as_array().unwrap().len(), 3);
    assert_eq!(found["data"]["records"][0]["index"], "filebeat-8");
}

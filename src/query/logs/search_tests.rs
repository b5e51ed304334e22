use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::model::log::{format_timestamp_ms, LogDoc, WriteOp};
use crate::storage::logs::{LogStore, LogStoreOptions};

const LIMITS: SearchLimits = SearchLimits {
    max_result_window: 10_000,
    max_buckets: 65_535,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// 100 docs, one per second ending one minute ago: status cycles 200/404/500,
/// hosts web-0..web-3, bytes = i * 10.
fn fixture() -> (tempfile::TempDir, std::sync::Arc<LogStore>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(LogStoreOptions::new(dir.path())).unwrap();
    let base = (now_ms() / 60_000 - 5) * 60_000;
    let docs = (0..100)
        .map(|i| {
            let status = [200, 404, 500][i % 3];
            let source = json!({
                "@timestamp": format_timestamp_ms((base + i as i64 * 1000) * 1_000_000),
                "message": format!("GET /api/items/{i} returned {status} after disk check"),
                "status": status,
                "bytes": i * 10,
                "host": {"name": format!("web-{}", i % 4)},
                "level": if status == 500 { "error" } else { "info" },
                "tags": ["a", if i % 2 == 0 { "even" } else { "odd" }],
            });
            LogDoc::new(
                if i < 50 { "logs-a" } else { "logs-b" }.into(),
                Some(format!("doc-{i}")),
                WriteOp::Index,
                source.as_object().unwrap().clone(),
            )
        })
        .collect();
    let out = store.append(docs, now_ms()).unwrap();
    assert!(out.iter().all(|o| o.result.is_ok()));
    store.commit().unwrap();
    (dir, store, base)
}

fn run(store: &LogStore, indices: &str, body: Value) -> Value {
    let req = SearchRequest::parse(Some(&body), &HashMap::new()).unwrap();
    let indices = store.catalog.read().resolve(indices);
    search(store, &indices, &req, LIMITS, now_ms()).unwrap()
}

fn total(v: &Value) -> u64 {
    v["hits"]["total"]["value"].as_u64().unwrap()
}

#[test]
fn queries_match_what_the_data_says() {
    let (_dir, store, base) = fixture();
    let t = |q: Value| total(&run(&store, "logs-*", json!({"query": q, "size": 0})));
    assert_eq!(t(json!({"match_all": {}})), 100);
    assert_eq!(t(json!({"term": {"status": 500}})), 33);
    assert_eq!(t(json!({"term": {"status": "500"}})), 33);
    assert_eq!(t(json!({"terms": {"status": [200, 404]}})), 67);
    assert_eq!(t(json!({"term": {"host.name": "web-1"}})), 25);
    assert_eq!(t(json!({"term": {"host.name.keyword": "web-1"}})), 25);
    assert_eq!(t(json!({"match": {"host.name": "web"}})), 100);
    assert_eq!(t(json!({"match": {"message": "items"}})), 100);
    assert_eq!(
        t(json!({"match_phrase": {"message": "returned 500"}})),
        34 - 1
    );
    assert_eq!(t(json!({"match_phrase": {"message": "500 returned"}})), 0);
    assert_eq!(t(json!({"range": {"bytes": {"gte": 100, "lt": 200}}})), 10);
    assert_eq!(t(json!({"range": {"bytes": {"gt": 985.5}}})), 1);
    assert_eq!(
        t(
            json!({"range": {"@timestamp": {"gte": base + 10_000, "lt": base + 20_000, "format": "epoch_millis"}}})
        ),
        10
    );
    assert_eq!(
        t(json!({"range": {"@timestamp": {"gte": "now-1d", "lte": "now"}}})),
        100
    );
    assert_eq!(t(json!({"exists": {"field": "host"}})), 100);
    assert_eq!(t(json!({"exists": {"field": "nope"}})), 0);
    assert_eq!(t(json!({"prefix": {"host.name": "web-"}})), 100);
    assert_eq!(
        t(json!({"wildcard": {"host.name": {"value": "WEB-?", "case_insensitive": true}}})),
        100
    );
    assert_eq!(t(json!({"regexp": {"host.name": "web-[12]"}})), 50);
    assert_eq!(
        t(json!({"ids": {"values": ["doc-1", "doc-99", "nope"]}})),
        2
    );
    assert_eq!(t(json!({"term": {"tags": "even"}})), 50);
    assert_eq!(
        t(
            json!({"bool": {"must": {"match": {"level": "error"}}, "must_not": [{"term": {"host.name": "web-0"}}]}})
        ),
        33 - 8
    );
    assert_eq!(
        t(
            json!({"bool": {"should": [{"term": {"status": 200}}, {"term": {"status": 404}}], "minimum_should_match": 1,
            "filter": [{"range": {"bytes": {"lt": 300}}}]}})
        ),
        20
    );
    assert_eq!(
        t(json!({"query_string": {"query": "status:500 AND host.name:web-1"}})),
        8
    );
    assert_eq!(
        t(json!({"query_string": {"query": "level:error OR status:404"}})),
        66
    );
    assert_eq!(
        t(json!({"query_string": {"query": "disk", "analyze_wildcard": true}})),
        100
    );
    assert_eq!(
        t(json!({"query_string": {"query": "status:[400 TO 499]"}})),
        33
    );
    assert_eq!(t(json!({"query_string": {"query": "NOT level:error"}})), 67);
    assert_eq!(
        t(json!({"query_string": {"query": "_exists_:tags AND host.name:web-*"}})),
        100
    );
    assert_eq!(
        t(json!({"multi_match": {"query": "web-2", "fields": ["host.name", "message"]}})),
        100
    );
    // Index patterns.
    assert_eq!(total(&run(&store, "logs-a", json!({"size": 0}))), 50);
    assert_eq!(
        total(&run(&store, "logs-*,-logs-b", json!({"size": 0}))),
        50
    );
}

#[test]
fn sorting_paging_and_source() {
    let (_dir, store, _) = fixture();
    let r = run(
        &store,
        "logs-*",
        json!({"size": 3, "sort": [{"@timestamp": {"order": "desc"}}],
        "_source": {"includes": ["host.*", "status"]}}),
    );
    let hits = r["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits[0]["_id"], "doc-99");
    assert_eq!(hits[2]["_id"], "doc-97");
    assert_eq!(hits[0]["_index"], "logs-b");
    assert_eq!(
        hits[0]["_source"],
        json!({"host": {"name": "web-3"}, "status": 200})
    );
    // search_after continues where the page ended.
    let after = hits[2]["sort"].clone();
    let r2 = run(
        &store,
        "logs-*",
        json!({"size": 2, "sort": [{"@timestamp": "desc"}], "search_after": after}),
    );
    assert_eq!(r2["hits"]["hits"][0]["_id"], "doc-96");
    // from/size and a keyword sort with a tie-breaker.
    let r3 = run(
        &store,
        "logs-*",
        json!({"from": 1, "size": 2, "sort": [{"host.name": "asc"}, {"bytes": "desc"}]}),
    );
    let ids: Vec<&str> = r3["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["doc-92", "doc-88"]);
    // Relevance: the default sort puts the better match first.
    let r4 = run(
        &store,
        "logs-*",
        json!({"query": {"match": {"message": "items 7"}}, "size": 1}),
    );
    assert_eq!(r4["hits"]["hits"][0]["_id"], "doc-7");
    assert!(r4["hits"]["max_score"].as_f64().unwrap() > 0.0);
    // track_total_hits caps.
    let r5 = run(&store, "logs-*", json!({"size": 0, "track_total_hits": 10}));
    assert_eq!(r5["hits"]["total"], json!({"value": 10, "relation": "gte"}));
    let r6 = run(
        &store,
        "logs-*",
        json!({"size": 0, "track_total_hits": false}),
    );
    assert!(r6["hits"].get("total").is_none());
}

#[test]
fn aggregations_match_what_the_data_says() {
    let (_dir, store, base) = fixture();
    let r = run(
        &store,
        "logs-*",
        json!({"size": 0, "aggs": {
            "per_minute": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "format": "epoch_millis"},
                "aggs": {"bytes": {"sum": {"field": "bytes"}}}},
            "status": {"terms": {"field": "status", "order": {"_key": "asc"}}},
            "hosts": {"terms": {"field": "host.name.keyword", "size": 2, "order": {"_key": "asc"}},
                "aggs": {"max_bytes": {"max": {"field": "bytes"}}}},
            "avg": {"avg": {"field": "bytes"}},
            "min": {"min": {"field": "bytes"}},
            "count": {"value_count": {"field": "status"}},
            "distinct": {"cardinality": {"field": "host.name"}},
            "p": {"percentiles": {"field": "bytes", "percents": [50]}},
            "hist": {"histogram": {"field": "bytes", "interval": 500}}
        }}),
    );
    let a = &r["aggregations"];
    let minutes = a["per_minute"]["buckets"].as_array().unwrap();
    assert_eq!(minutes.len(), 2);
    assert_eq!(minutes[0]["key"], json!(base));
    assert_eq!(minutes[0]["key_as_string"], json!(base.to_string()));
    assert_eq!(minutes[0]["doc_count"], 60);
    assert_eq!(minutes[1]["doc_count"], 40);
    let first_minute_bytes: i64 = (0..60).map(|i| i * 10).sum();
    assert_eq!(
        minutes[0]["bytes"]["value"].as_f64().unwrap(),
        first_minute_bytes as f64
    );
    let status = a["status"]["buckets"].as_array().unwrap();
    assert_eq!(status[0]["key"].as_f64(), Some(200.0));
    assert_eq!(status[0]["doc_count"], 34);
    let hosts = a["hosts"]["buckets"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["key"], "web-0");
    assert_eq!(hosts[0]["max_bytes"]["value"].as_f64(), Some(960.0));
    assert_eq!(a["hosts"]["sum_other_doc_count"], 50);
    assert_eq!(a["avg"]["value"].as_f64(), Some(495.0));
    assert_eq!(a["min"]["value"].as_f64(), Some(0.0));
    assert_eq!(a["count"]["value"], 100);
    assert_eq!(a["distinct"]["value"], 4);
    let p50 = a["p"]["values"]["50.0"].as_f64().unwrap();
    assert!((p50 - 495.0).abs() < 20.0, "{p50}");
    assert_eq!(a["hist"]["buckets"][0]["doc_count"], 50);
    // Bad requests are named.
    let req = SearchRequest::parse(
        Some(&json!({"aggs": {"x": {"geo_bounds": {"field": "p"}}}})),
        &HashMap::new(),
    )
    .unwrap();
    let err = search(&store, &["logs-a".to_owned()], &req, LIMITS, now_ms()).unwrap_err();
    assert!(err.reason.contains("geo_bounds"));
}

#[test]
fn empty_store_answers_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(LogStoreOptions::new(dir.path())).unwrap();
    let req = SearchRequest::parse(
        Some(&json!({"aggs": {"h": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}}}})),
        &HashMap::new(),
    )
    .unwrap();
    let r = search(&store, &[], &req, LIMITS, now_ms()).unwrap();
    assert_eq!(r["hits"]["total"]["value"], 0);
    assert_eq!(r["aggregations"]["h"]["buckets"], json!([]));
    let _ = format_timestamp_ms(0);
}

#[test]
fn generated_ids_and_trace_ids_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(LogStoreOptions::new(dir.path())).unwrap();
    let ts = format_timestamp_ms(now_ms() * 1_000_000);
    let trace = "4BF92F3577B34DA6A3CE929D0E0E4736";
    let docs = vec![
        json!({"@timestamp": ts, "message": "a", "trace_id": trace, "span_id": "00f067aa0ba902b7"}),
        json!({"@timestamp": ts, "message": "b", "trace": {"id": "not-hex-but-an-id"}}),
    ]
    .into_iter()
    .map(|v| {
        LogDoc::new(
            "t".into(),
            None,
            WriteOp::Create,
            v.as_object().unwrap().clone(),
        )
    })
    .collect();
    let out = store.append(docs, now_ms()).unwrap();
    store.commit().unwrap();
    let id = out[1].id.clone();
    assert_eq!(id.len(), 20);
    let r = run(&store, "t", json!({"query": {"ids": {"values": [id]}}}));
    assert_eq!(total(&r), 1);
    assert_eq!(r["hits"]["hits"][0]["_id"], json!(out[1].id));
    assert_eq!(r["hits"]["hits"][0]["_index"], "t");
    let t = |q: Value| total(&run(&store, "t", json!({"query": q})));
    assert_eq!(t(json!({"term": {"trace_id": trace.to_lowercase()}})), 1);
    assert_eq!(t(json!({"match": {"trace_id": trace}})), 1);
    assert_eq!(t(json!({"term": {"span_id": "00F067AA0BA902B7"}})), 1);
    assert_eq!(t(json!({"term": {"trace.id": "not-hex-but-an-id"}})), 1);
    assert_eq!(t(json!({"exists": {"field": "trace_id"}})), 1);
    let r = run(&store, "t", json!({"query": {"term": {"trace_id": trace}}}));
    assert_eq!(r["hits"]["hits"][0]["_source"]["trace_id"], trace);
}

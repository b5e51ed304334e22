//! Fuzzing of every decoder and parser reachable from the network, with
//! proptest: remote_write, OTLP protobuf and JSON (decoded and translated),
//! `_bulk` NDJSON, the query DSL, Lucene, PromQL (through the depth guard)
//! and date math. Inputs are arbitrary bytes and mutations of valid inputs;
//! the property is "no panic" (a panic fails the case), plus, for PromQL,
//! that the lexical depth bound really bounds the parsed tree.
//!
//! The default run is bounded (`FUZZ_CASES`, 256 per target); a longer run:
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz`. Failing inputs
//! are saved by proptest under `tests/fuzz.proptest-regressions` and replayed
//! first on every run: each crash found becomes a regression test.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use oxeye::ingest::otlp::{logs as otlp_logs, metrics as otlp_metrics, traces as otlp_traces};
use oxeye::ingest::{es_bulk, remote_write, LabelCheck};
use oxeye::query::logs::{datemath, dsl, lucene};
use oxeye::query::promql;
use proptest::prelude::*;
use prost::Message;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .or_else(|_| std::env::var("FUZZ_CASES"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking a failure is worth it; unbounded shrinking is not.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

fn check() -> LabelCheck {
    LabelCheck {
        max_series_per_request: 10_000,
        max_labels_per_series: 64,
        max_label_name_length: 256,
        max_label_value_length: 4096,
    }
}

/// Flip, insert, delete and truncate bytes of `seed`.
fn mutations(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    prop::collection::vec((0..4u8, 0..len, any::<u8>()), 1..8).prop_map(move |edits| {
        let mut bytes = seed.clone();
        for (op, at, byte) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 if !bytes.is_empty() => bytes[at] ^= byte | 1,
                1 => bytes.insert(at.min(bytes.len()), byte),
                2 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    })
}

fn official(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../shared/conformance/otlp-json/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path} is missing ({e}); it comes with ../shared"))
}

fn remote_write_seed() -> Vec<u8> {
    let mut body = Vec::new();
    remote_write::encode::timeseries(
        &mut body,
        &[("__name__", "up"), ("job", "api"), ("instance", "a:9090")],
        &[(1_700_000_000_000, 1.0), (1_700_000_015_000, f64::NAN)],
    );
    remote_write::encode::timeseries(&mut body, &[("__name__", "x")], &[(5, -0.0)]);
    body
}

fn metrics_seed() -> Vec<u8> {
    let request: ExportMetricsServiceRequest =
        serde_json::from_slice(&official("metrics.json")).unwrap();
    request.encode_to_vec()
}

fn translate_metrics(request: &ExportMetricsServiceRequest) {
    let deltas = otlp_metrics::DeltaState::default();
    let out = otlp_metrics::translate(
        request,
        &check(),
        &deltas,
        &["k8s.pod.name".to_string()],
        1_700_000_000_000,
    );
    let _ = out.series_count();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn remote_write_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = remote_write::decode(&bytes, &check());
    }

    #[test]
    fn remote_write_mutated(bytes in mutations(remote_write_seed())) {
        let _ = remote_write::decode(&bytes, &check());
    }

    #[test]
    fn otlp_metrics_protobuf(bytes in mutations(metrics_seed())) {
        if let Ok(request) = ExportMetricsServiceRequest::decode(bytes.as_slice()) {
            translate_metrics(&request);
        }
    }

    #[test]
    fn otlp_metrics_json(bytes in mutations(official("metrics.json"))) {
        if let Ok(request) = serde_json::from_slice::<ExportMetricsServiceRequest>(&bytes) {
            translate_metrics(&request);
        }
    }

    #[test]
    fn otlp_logs(bytes in mutations(official("logs.json")), proto in any::<bool>()) {
        let request = if proto {
            let seed: ExportLogsServiceRequest = serde_json::from_slice(&official("logs.json")).unwrap();
            let mut encoded = seed.encode_to_vec();
            for (i, b) in bytes.iter().take(8).enumerate() {
                if !encoded.is_empty() {
                    let at = (*b as usize * (i + 1)) % encoded.len();
                    encoded[at] ^= b | 1;
                }
            }
            ExportLogsServiceRequest::decode(encoded.as_slice()).ok()
        } else {
            serde_json::from_slice::<ExportLogsServiceRequest>(&bytes).ok()
        };
        if let Some(request) = request {
            let _ = otlp_logs::translate(&request, "otel-logs", 1_700_000_000_000_000_000);
        }
    }

    #[test]
    fn otlp_traces(bytes in mutations(official("trace.json"))) {
        if let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(&bytes) {
            let encoded = request.encode_to_vec();
            let _ = otlp_traces::translate(request);
            if let Ok(again) = ExportTraceServiceRequest::decode(encoded.as_slice()) {
                let _ = otlp_traces::translate(again);
            }
        }
    }

    #[test]
    fn bulk_ndjson(text in "([{}\\[\\]:,\"\\n\\r a-z_0-9.@-]|index|create|update|delete|_index|_id|\\\\u0000){0,300}") {
        let _ = es_bulk::parse(text.as_bytes(), Some("d"), 1000);
    }

    #[test]
    fn query_dsl(value in json_value()) {
        let _ = dsl::parse(&value);
        let _ = dsl::parse(&serde_json::json!({"bool": {"must": [value.clone()], "should": value}}));
    }

    #[test]
    fn lucene_strings(text in "([()\\[\\]{}\"~^*?:/\\\\+!<>=&| a-zA-Z0-9._-]|AND|OR|NOT|TO|_exists_){0,200}") {
        let _ = lucene::parse(&text, &[], false);
        let _ = lucene::parse(&text, &["message".to_owned()], true);
    }

    #[test]
    fn date_math(text in "(now|\\|\\||[-+/0-9dhmsyMwHT:.Z]|epoch_millis){0,40}", format in prop::option::of("(epoch_millis|epoch_second|yyyy-MM-dd|strict_date_optional_time)")) {
        let _ = datemath::resolve(&serde_json::Value::String(text), format.as_deref(), 1_700_000_000_000, true);
    }

    #[test]
    fn promql_depth_bound_holds(text in promql_text()) {
        promql::with_stack(|| {
            let limit = promql::max_expression_depth();
            if let Ok(expr) = promql::parse(&text) {
                let depth = tree_depth(&expr);
                prop_assert!(depth <= limit, "{text:?} parsed to depth {depth} > {limit}");
            }
            Ok(())
        })?;
    }
}

/// JSON values up to 6 levels deep, with the keys the query DSL knows.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z*?%0-9 ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        let key = prop_oneof![
            Just("bool".to_owned()),
            Just("must".to_owned()),
            Just("should".to_owned()),
            Just("filter".to_owned()),
            Just("must_not".to_owned()),
            Just("match".to_owned()),
            Just("term".to_owned()),
            Just("terms".to_owned()),
            Just("range".to_owned()),
            Just("query_string".to_owned()),
            Just("query".to_owned()),
            Just("gte".to_owned()),
            Just("lt".to_owned()),
            Just("minimum_should_match".to_owned()),
            Just("exists".to_owned()),
            Just("field".to_owned()),
            Just("wildcard".to_owned()),
            Just("regexp".to_owned()),
            Just("ids".to_owned()),
            Just("values".to_owned()),
            Just("constant_score".to_owned()),
            "[a-z.]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// PromQL-like text: tokens of the language, nested and chained.
fn promql_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("up"),
        Just("rate("),
        Just("sum by (job) ("),
        Just("("),
        Just(")"),
        Just("["),
        Just("5m"),
        Just(":1m]"),
        Just("]"),
        Just("{job=\"a\"}"),
        Just(" + "),
        Just(" - "),
        Just(" * "),
        Just(" / "),
        Just(" and "),
        Just(" or "),
        Just(" unless "),
        Just("-"),
        Just("1"),
        Just("1e3"),
        Just(" offset 5m"),
        Just(" @ 100"),
        Just("\"s\""),
        Just("# c\n"),
        Just(","),
        Just(" > bool "),
        Just("atan2"),
        Just("abs("),
    ];
    prop_oneof![
        prop::collection::vec(token, 0..120).prop_map(|t| t.concat()),
        (1usize..800, prop::bool::ANY).prop_map(|(n, parens)| if parens {
            format!("{}1{}", "(".repeat(n), ")".repeat(n))
        } else {
            vec!["1"; n].join(" + ")
        }),
    ]
}

/// The depth of a parsed expression tree (bounded by the guard).
fn tree_depth(expr: &promql_parser::parser::Expr) -> usize {
    use promql_parser::parser::Expr;
    1 + match expr {
        Expr::Aggregate(a) => tree_depth(&a.expr).max(a.param.as_deref().map_or(0, tree_depth)),
        Expr::Unary(u) => tree_depth(&u.expr),
        Expr::Binary(b) => tree_depth(&b.lhs).max(tree_depth(&b.rhs)),
        Expr::Paren(p) => tree_depth(&p.expr),
        Expr::Subquery(s) => tree_depth(&s.expr),
        Expr::MatrixSelector(_) => 1,
        Expr::Call(c) => c.args.args.iter().map(|a| tree_depth(a)).max().unwrap_or(0),
        _ => 0,
    }
}

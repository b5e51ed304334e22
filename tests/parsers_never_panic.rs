//! Hostile input never crashes the parsers that read client bytes: Lucene
//! query strings, the Elasticsearch query DSL, `_bulk` bodies, OTLP/JSON
//! bodies, PromQL-adjacent date math. A deterministic generator produces
//! mutated versions of valid inputs (bounded: a fixed number of cases).

use oxeye::ingest::es_bulk;
use std::collections::BTreeMap;

use oxeye::query::logs::compile::Compiler;
use oxeye::query::logs::{datemath, dsl, lucene};
use oxeye::storage::logs::catalog::FieldMapping;
use oxeye::storage::logs::schema::LogSchema;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Delete, duplicate, swap or insert characters of `seed`.
fn mutate(rng: &mut Rng, seed: &str, alphabet: &[char]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = if chars.is_empty() {
            0
        } else {
            rng.below(chars.len())
        };
        match rng.below(4) {
            0 if !chars.is_empty() => {
                chars.remove(at);
            }
            1 if !chars.is_empty() => {
                let c = chars[at];
                chars.insert(at, c);
            }
            2 if chars.len() > 1 => {
                let other = rng.below(chars.len());
                chars.swap(at, other);
            }
            _ => chars.insert(at, alphabet[rng.below(alphabet.len())]),
        }
    }
    chars.into_iter().collect()
}

const LUCENE: [&str; 8] = [
    "level:error AND service.name:checkout",
    "status:[400 TO 499} OR -path:/api\\/v1/",
    "msg:\"disk full\"~2 +host:web-* _exists_:user",
    "(a OR b) AND NOT c^2 d~1",
    "bytes:>=1000 bytes:<5 x:*",
    "field:(one two \"three four\")",
    "\\(escaped\\:colon\\)",
    "*",
];

const DSL: [&str; 6] = [
    r#"{"bool":{"must":[{"match":{"m":"x y"}}],"filter":{"range":{"@timestamp":{"gte":"now-15m/m","lte":"now"}}}}}"#,
    r#"{"terms":{"status":[1,2,"3"]}}"#,
    r#"{"query_string":{"query":"a AND b","default_field":"m","default_operator":"AND"}}"#,
    r#"{"multi_match":{"query":"x","fields":["a^2","b"],"type":"phrase"}}"#,
    r#"{"wildcard":{"h":{"value":"w?b*","case_insensitive":true}}}"#,
    r#"{"bool":{"should":[{"exists":{"field":"x"}},{"ids":{"values":["1"]}}],"minimum_should_match":"50%"}}"#,
];

const BULK: &str = "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"@timestamp\":\"2024-01-01T00:00:00Z\",\"m\":1}\n{\"create\":{}}\n{\"x\":[1,{\"y\":null}]}\n";

#[test]
fn mutated_inputs_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Queries that parse are also compiled against fields of every kind.
    let schema = LogSchema::new();
    let mappings: Vec<(&str, FieldMapping)> = [
        ("level", "keyword"),
        ("m", "text"),
        ("message", "match_only_text"),
        ("status", "long"),
        ("bytes", "double"),
        ("ok", "boolean"),
        ("when", "date"),
        ("host", "object"),
    ]
    .into_iter()
    .map(|(name, kind)| (name, FieldMapping::from_es_type(kind).unwrap()))
    .collect();
    let fields: BTreeMap<&str, &FieldMapping> = mappings.iter().map(|(n, m)| (*n, m)).collect();
    let indices = vec!["a".to_owned()];
    let mut compiler = Compiler::new(&schema, &fields, &indices, 1_700_000_000_000);
    let alphabet: Vec<char> = "(){}[]\"\\:*?~^+-!/<>=&| ,.0aZé\u{0}\n".chars().collect();
    for _ in 0..4000 {
        let seed = LUCENE[rng.below(LUCENE.len())];
        let text = mutate(&mut rng, seed, &alphabet);
        if let Ok(query) = lucene::parse(&text, &[], rng.below(2) == 0) {
            let _ = compiler.compile(&query);
        }
    }
    for _ in 0..4000 {
        let seed = DSL[rng.below(DSL.len())];
        let text = mutate(&mut rng, seed, &alphabet);
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Ok(query) = dsl::parse(&value) {
                let _ = compiler.compile(&query);
            }
        }
    }
    for _ in 0..3000 {
        let text = mutate(&mut rng, BULK, &alphabet);
        let _ = es_bulk::parse(text.as_bytes(), Some("d"), 1000);
    }
    for _ in 0..3000 {
        let text = mutate(&mut rng, "now-15m/d||+1M", &alphabet);
        let _ = datemath::resolve(
            &serde_json::Value::String(text),
            Some("yyyy-MM-dd||epoch_millis"),
            0,
            true,
        );
    }
}

const AGGS: [&str; 4] = [
    r#"{"2":{"date_histogram":{"field":"@timestamp","fixed_interval":"1m","min_doc_count":0,"extended_bounds":{"min":0,"max":600000},"format":"epoch_millis"},"aggs":{"1":{"avg":{"field":"bytes"}},"3":{"derivative":{"buckets_path":"1","unit":"1s"}},"4":{"moving_fn":{"buckets_path":"3","window":5,"shift":1,"script":"MovingFunctions.stdDev(values, MovingFunctions.unweightedAvg(values))"}},"5":{"bucket_script":{"buckets_path":{"a":"1","b":"_count"},"script":"-(params.a % params.b) / (2.5e1 - params.b)"}}}}}"#,
    r#"{"f":{"filters":{"filters":{"e":{"query_string":{"query":"level:error","analyze_wildcard":true}}}},"aggs":{"t":{"top_metrics":{"metrics":[{"field":"bytes"}],"sort":{"@timestamp":"desc"},"size":1}}}}}"#,
    r#"{"m":{"date_histogram":{"field":"@timestamp","calendar_interval":"1M","time_zone":"Europe/Berlin","extended_bounds":{"min":"2024-01-01","max":"2024-12-31"}},"aggs":{"r":{"rate":{"unit":"day"}},"c":{"cumulative_sum":{"buckets_path":"_count"}},"s":{"serial_diff":{"buckets_path":"_count","lag":2}}}}}"#,
    r#"{"w":{"date_histogram":{"field":"@timestamp","interval":"week","time_zone":"-05:30"},"aggs":{"a":{"moving_avg":{"buckets_path":"_count","window":3,"model":"ewma","settings":{"alpha":0.5}}}}}}"#,
];

/// Aggregation requests (pipelines, scripts, calendar histograms) and
/// zoned date math: refused or answered, never a panic.
#[test]
fn mutated_aggregations_never_panic() {
    use oxeye::query::logs::{aggs, script};
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mappings: Vec<(&str, FieldMapping)> = [("level", "keyword"), ("bytes", "double")]
        .into_iter()
        .map(|(name, kind)| (name, FieldMapping::from_es_type(kind).unwrap()))
        .collect();
    let fields: BTreeMap<&str, &FieldMapping> = mappings.iter().map(|(n, m)| (*n, m)).collect();
    let alphabet: Vec<char> = "(){}[]\"\\:*/+-%.,0123456789eaMqywdhs_ \u{0}"
        .chars()
        .collect();
    let mut translated = 0;
    for _ in 0..4000 {
        let seed = AGGS[rng.below(AGGS.len())];
        let text = mutate(&mut rng, seed, &alphabet);
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let mut ctx = aggs::Context::new(&fields, 1_700_000_000_000);
        ctx.data_bounds = Some((1_704_067_200_000, 1_735_689_599_999));
        ctx.max_buckets = 2_000;
        if let Ok((_, shapes)) = aggs::translate(&value, &mut ctx) {
            translated += 1;
            // Shape a fabricated result with every name holding buckets.
            let mut result = serde_json::Map::new();
            for name in shapes.keys() {
                let buckets: Vec<serde_json::Value> = (0..6)
                    .map(|i| {
                        let mut b = serde_json::json!({"key": (i * 60_000).to_string(), "doc_count": i % 3});
                        for child in shapes[name].children.keys() {
                            b[child] = serde_json::json!({"value": if i == 2 { serde_json::Value::Null } else { serde_json::json!(i as f64 * 1.5) }});
                        }
                        b
                    })
                    .collect();
                result.insert(name.clone(), serde_json::json!({"buckets": buckets}));
            }
            let mut result = serde_json::Value::Object(result);
            aggs::postprocess(&mut result, &shapes);
        }
    }
    assert!(
        translated > 100,
        "only {translated} mutated requests translated"
    );
    let script_alphabet: Vec<char> = "()+-*/%.,0123456789e params.abvlueMovingFunctions;[]'\""
        .chars()
        .collect();
    for _ in 0..4000 {
        let seed = [
            "params.var1 / params.var2 * 100",
            "MovingFunctions.ewma(values, 0.3) - -(1 % 0)",
        ][rng.below(2)];
        let text = mutate(&mut rng, seed, &script_alphabet);
        if let Ok(expr) = script::parse(&text) {
            let params = [("var1".to_owned(), 3.0), ("var2".to_owned(), 0.0)]
                .into_iter()
                .collect();
            let _ = expr.eval(&params, &[1.0, f64::NAN, -2.0]);
        }
    }
    for _ in 0..3000 {
        let text = mutate(&mut rng, "2024-03-31T02:30:00||+1M/d", &alphabet);
        for zone in [
            "Europe/Berlin",
            "+05:30",
            "America/Sao_Paulo",
            "Pacific/Apia",
        ] {
            let format = datemath::with_time_zone(None, zone);
            let _ = datemath::resolve(
                &serde_json::Value::String(text.clone()),
                Some(&format),
                1_700_000_000_000,
                rng.below(2) == 0,
            );
        }
    }
}

use super::*;
use crate::model::span::AttrValue;

fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    start_ms: i64,
    dur_ms: i64,
) -> Span {
    let t = now_ms() - 60_000 + start_ms;
    Span {
        trace_id: [trace; 16],
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        trace_state: String::new(),
        flags: 0,
        name: name.into(),
        kind: if parent.is_none() { 2 } else { 3 },
        start_ns: t * 1_000_000,
        end_ns: (t + dur_ms) * 1_000_000,
        status_code: 0,
        status_message: String::new(),
        service: service.into(),
        resource: std::sync::Arc::new(vec![(
            "service.name".into(),
            AttrValue::Str(service.into()),
        )]),
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: vec![("http.route".into(), AttrValue::Str(format!("/{name}")))],
        events: vec![],
        links: vec![],
    }
}

fn ids(spans: &[Span]) -> Vec<u8> {
    spans.iter().map(|s| s.span_id[0]).collect()
}

#[test]
fn traces_span_head_blocks_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    {
        let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
        store
            .append(
                vec![
                    span(1, 1, None, "web", "GET /", 0, 100),
                    span(2, 5, None, "web", "GET /x", 5, 900),
                ],
                now,
            )
            .unwrap();
        store.cut().unwrap();
        // The rest of trace 1 arrives later, in another batch and block.
        store
            .append(
                vec![
                    span(1, 2, Some(1), "api", "list", 10, 50),
                    span(1, 3, Some(2), "db", "SELECT", 20, 10),
                ],
                now,
            )
            .unwrap();
        assert_eq!(ids(&store.trace(&[1; 16]).unwrap()), vec![1, 2, 3]);
        store.cut().unwrap();
        store
            .append(vec![span(1, 4, Some(2), "cache", "GET", 30, 1)], now)
            .unwrap();
        // "crash": the last span is only in the WAL.
    }
    let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
    let trace = store.trace(&[1; 16]).unwrap();
    assert_eq!(ids(&trace), vec![1, 2, 3, 4]);
    assert_eq!(trace[1].attributes[0].1, AttrValue::Str("/list".into()));
    assert_eq!(store.services(), vec!["api", "cache", "db", "web"]);
    assert_eq!(
        store.operations("web"),
        vec![("GET /".to_owned(), 2), ("GET /x".to_owned(), 2)]
    );

    let window = |q: TraceQuery| TraceQuery {
        start_ns: (now - 3_600_000) * 1_000_000,
        end_ns: now * 1_000_000,
        limit: 10,
        ..q
    };
    let found = store
        .find_traces(&window(TraceQuery {
            service: Some("web".into()),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(found, vec![[2; 16], [1; 16]]);
    let slow = store
        .find_traces(&window(TraceQuery {
            min_duration_ns: Some(500_000_000),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(slow, vec![[2; 16]]);
    let tagged = store
        .find_traces(&window(TraceQuery {
            tags: vec![("http.route".into(), "/SELECT".into())],
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(tagged, vec![[1; 16]]);
    let by_op = store
        .find_traces(&window(TraceQuery {
            service: Some("db".into()),
            operation: Some("nope".into()),
            ..Default::default()
        }))
        .unwrap();
    assert!(by_op.is_empty());
    let deps = store
        .dependencies((now - 3_600_000) * 1_000_000, now * 1_000_000)
        .unwrap();
    let edges: Vec<(&str, &str, u64)> = deps
        .iter()
        .map(|d| (d.parent.as_str(), d.child.as_str(), d.call_count))
        .collect();
    assert_eq!(
        edges,
        vec![("api", "cache", 1), ("api", "db", 1), ("web", "api", 1)]
    );
}

#[test]
fn retention_drops_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
    let now = now_ms();
    store
        .append(vec![span(7, 1, None, "web", "GET /", 0, 1)], now)
        .unwrap();
    store.cut().unwrap();
    assert_eq!(store.trace(&[7; 16]).unwrap().len(), 1);
    store.maintain(now + 8 * 86_400_000).unwrap();
    assert!(store.trace(&[7; 16]).unwrap().is_empty());
}

/// A span block that cannot be written leaves the spans readable and their
/// WAL in place; the next cut writes them first; nothing is lost across a
/// restart or duplicated.
#[test]
fn failed_span_block_writes_lose_nothing() {
    use crate::storage::faults;
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    {
        let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
        store
            .append(vec![span(1, 1, None, "web", "GET /", 0, 100)], now)
            .unwrap();
        faults::arm("span_block.rename", 0, 1, std::io::ErrorKind::StorageFull);
        assert!(store.cut().is_err());
        faults::clear();
        assert_eq!(ids(&store.trace(&[1; 16]).unwrap()), vec![1]);
        // More spans arrive; the next cut writes the failed one first.
        store
            .append(vec![span(1, 2, Some(1), "db", "SELECT", 10, 5)], now)
            .unwrap();
        store.cut().unwrap();
        assert_eq!(ids(&store.trace(&[1; 16]).unwrap()), vec![1, 2]);
        store.close().unwrap();
    }
    let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
    assert_eq!(ids(&store.trace(&[1; 16]).unwrap()), vec![1, 2]);
    // A failure, then a restart before any retry: the WAL still has it.
    store
        .append(vec![span(3, 7, None, "web", "GET /y", 0, 1)], now)
        .unwrap();
    faults::arm("span_block.rename", 0, 1, std::io::ErrorKind::StorageFull);
    assert!(store.cut().is_err());
    faults::clear();
    drop(store);
    let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
    assert_eq!(ids(&store.trace(&[3; 16]).unwrap()), vec![7]);
    assert_eq!(ids(&store.trace(&[1; 16]).unwrap()), vec![1, 2]);
}

/// A block of several record batches: every trace is found whole, also
/// those straddling a batch boundary; absent ids find nothing; a service
/// search reads only its batches and still finds every trace; the block's
/// memory does not grow with its spans (well under a byte a span).
#[test]
fn large_blocks_keep_a_small_index_and_find_every_trace() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
    // 3,000 traces of 7 spans (21,000 spans, six batches); trace ids spread
    // over the id space; one rare service holds the spans of 3 traces.
    let trace_id = |t: u32| -> TraceId {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&t.wrapping_mul(2_654_435_761).to_be_bytes());
        id[12..].copy_from_slice(&t.to_be_bytes());
        id
    };
    let rare = [5u32, 1_500, 2_999];
    let mut spans = Vec::new();
    for t in 0..3_000u32 {
        for s in 0..7u8 {
            let mut sp = span(0, s, s.checked_sub(1), "web", "op", i64::from(s), 5);
            sp.trace_id = trace_id(t);
            if rare.contains(&t) && s == 3 {
                sp.service = "rare".into();
            }
            spans.push(sp);
        }
    }
    store.append(spans, now).unwrap();
    store.cut().unwrap();
    let blocks = store.blocks.read().clone();
    assert_eq!(blocks.len(), 1);
    let block = &blocks[0];
    assert!(block.index_bytes() < 21_000 / 2, "{}", block.index_bytes());
    for t in (0..3_000u32).step_by(7).chain([0, 2_999]) {
        let trace = store.trace(&trace_id(t)).unwrap();
        assert_eq!(ids(&trace), vec![0, 1, 2, 3, 4, 5, 6], "trace {t}");
        assert!(trace.iter().all(|s| s.trace_id == trace_id(t)));
    }
    let mut false_hits = 0;
    for t in 3_000..4_000u32 {
        assert!(store.trace(&trace_id(t)).unwrap().is_empty());
        false_hits += usize::from(block.may_hold(&trace_id(t)));
    }
    assert!(false_hits < 30, "{false_hits} false positives in 1,000");
    let rare_batches = block.batches_of_service("rare").unwrap();
    assert!(rare_batches.len() <= 3);
    let found = store
        .find_traces(&TraceQuery {
            service: Some("rare".into()),
            start_ns: (now - 3_600_000) * 1_000_000,
            end_ns: now * 1_000_000,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let mut expected: Vec<TraceId> = rare.iter().map(|&t| trace_id(t)).collect();
    let mut found_sorted = found.clone();
    found_sorted.sort();
    expected.sort();
    assert_eq!(found_sorted, expected);
    // Reopened from disk, the same index answers the same.
    drop(blocks);
    store.close().unwrap();
    drop(store);
    let store = TraceStore::open(TraceStoreOptions::new(dir.path())).unwrap();
    assert_eq!(ids(&store.trace(&trace_id(1_500)).unwrap()).len(), 7);
}

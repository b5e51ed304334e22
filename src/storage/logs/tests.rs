use serde_json::json;

use super::*;

fn doc(index: &str, id: Option<&str>, op: WriteOp, source: serde_json::Value) -> LogDoc {
    LogDoc::new(
        index.into(),
        id.map(str::to_owned),
        op,
        source.as_object().unwrap().clone(),
    )
}

fn now() -> i64 {
    now_ms()
}

fn count(store: &LogStore) -> usize {
    store
        .partitions_between(i64::MIN, i64::MAX)
        .iter()
        .map(|p| p.searcher().num_docs() as usize)
        .sum()
}

#[test]
fn append_commit_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ts = crate::model::log::format_timestamp_ms(now() * 1_000_000);
    {
        let store = LogStore::open(LogStoreOptions::new(dir.path())).unwrap();
        let out = store
            .append(
                vec![
                    doc(
                        "app",
                        None,
                        WriteOp::Index,
                        json!({"@timestamp": ts, "message": "hello"}),
                    ),
                    doc(
                        "app",
                        Some("a"),
                        WriteOp::Create,
                        json!({"@timestamp": ts, "n": 1}),
                    ),
                    doc(
                        "app",
                        None,
                        WriteOp::Index,
                        json!({"@timestamp": ts, "n": "not a number"}),
                    ),
                    doc("Bad", None, WriteOp::Index, json!({"x": 1})),
                ],
                now(),
            )
            .unwrap();
        assert!(out[0].result.is_ok() && out[1].result.is_ok());
        assert_eq!(out[2].result.as_ref().unwrap_err().status, 400);
        assert_eq!(
            out[3].result.as_ref().unwrap_err().kind,
            "invalid_index_name_exception"
        );
        assert_eq!(out[0].id.len(), 20);
        // Not searchable before a commit; durable in the WAL already.
        assert_eq!(count(&store), 0);
        let again = store
            .append(
                vec![
                    doc("app", Some("a"), WriteOp::Create, json!({"@timestamp": ts})),
                    doc(
                        "app",
                        Some("a"),
                        WriteOp::Index,
                        json!({"@timestamp": ts, "n": 2}),
                    ),
                ],
                now(),
            )
            .unwrap();
        assert_eq!(again[0].result.as_ref().unwrap_err().status, 409);
        assert_eq!(again[1].result, Ok(Written::Updated));
        store.commit().unwrap();
        assert_eq!(count(&store), 2);
        // Written after the commit: only in the WAL when we "crash".
        store
            .append(
                vec![doc(
                    "app",
                    None,
                    WriteOp::Index,
                    json!({"@timestamp": ts, "message": "late"}),
                )],
                now(),
            )
            .unwrap();
    }
    let store = LogStore::open(LogStoreOptions::new(dir.path())).unwrap();
    assert_eq!(count(&store), 3);
    assert!(store.catalog.read().indices["app"].fields.contains_key("n"));
    // Reopening again replays nothing twice.
    drop(store);
    let store = LogStore::open(LogStoreOptions::new(dir.path())).unwrap();
    assert_eq!(count(&store), 3);
    assert!(store.delete_index("app").unwrap());
    assert_eq!(count(&store), 0);
    assert!(!store.catalog.read().indices.contains_key("app"));
}

#[test]
fn retention_drops_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LogStoreOptions::new(dir.path());
    options.partition_ms = 3_600_000;
    options.retention_ms = 2 * 3_600_000;
    let store = LogStore::open(options).unwrap();
    let now = now();
    let old = crate::model::log::format_timestamp_ms((now - 90 * 60_000) * 1_000_000);
    let out = store
        .append(
            vec![
                doc("a", None, WriteOp::Index, json!({"@timestamp": old})),
                doc(
                    "a",
                    None,
                    WriteOp::Index,
                    json!({"@timestamp": "2001-01-01T00:00:00Z"}),
                ),
            ],
            now,
        )
        .unwrap();
    assert!(out[0].result.is_ok());
    assert!(out[1]
        .result
        .as_ref()
        .unwrap_err()
        .reason
        .contains("retention"));
    store.commit().unwrap();
    assert_eq!(count(&store), 1);
    store.maintain(now + 3 * 3_600_000, 0).unwrap();
    assert_eq!(count(&store), 0);
    assert!(store.partitions_between(i64::MIN, i64::MAX).is_empty());
}

/// A commit that writes the catalogue to a slow disk does not hold the
/// catalogue lock meanwhile: readers (mappings, health, typing of known
/// documents) and writers of new fields go on.
#[test]
fn a_slow_catalogue_write_holds_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(LogStoreOptions::new(dir.path())).unwrap();
    let ts = crate::model::log::format_timestamp_ms(now() * 1_000_000);
    store
        .append(
            vec![doc(
                "slow",
                None,
                WriteOp::Create,
                json!({"@timestamp": ts, "a": 1}),
            )],
            now(),
        )
        .unwrap();
    let committing = {
        let store = store.clone();
        std::thread::spawn(move || {
            crate::storage::faults::arm_delay("rename", std::time::Duration::from_secs(3));
            store.commit().unwrap();
        })
    };
    // Wait until the commit is inside the slow write (the catalogue was
    // serialised, so it is clean), then take the lock both ways.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.catalog.read().dirty && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        !committing.is_finished(),
        "the commit finished before the check"
    );
    let read = store
        .catalog
        .try_read_for(std::time::Duration::from_millis(500));
    assert!(
        read.is_some(),
        "the catalogue read lock waited for a disk write"
    );
    drop(read);
    let outcome = store
        .append(
            vec![doc(
                "slow",
                None,
                WriteOp::Create,
                json!({"@timestamp": ts, "new_field": "x"}),
            )],
            now(),
        )
        .unwrap();
    assert!(outcome[0].result.is_ok());
    assert!(!committing.is_finished(), "the write waited for the commit");
    committing.join().unwrap();
}

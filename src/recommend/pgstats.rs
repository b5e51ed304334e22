//! Index usage where a PostgreSQL exporter's series are stored
//! (`postgres_exporter`'s `pg_stat_user_indexes_idx_scan`,
//! `pg_stat_user_tables_{seq_scan,idx_scan,seq_tup_read}`): indexes not
//! scanned once in the window, and tables read mostly by sequential scans,
//! each joined with the slow templates (from the span analysis) that touch
//! the table.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::query::promql::{self, EngineOptions};
use crate::storage::metrics::MetricsStore;

/// Sequential scans reading fewer rows than this in the window are not worth a remark.
const MIN_SEQ_ROWS: f64 = 10_000.0;

fn query(store: &MetricsStore, q: &str, t: i64, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    if let Ok(result) = promql::instant_query(store, &EngineOptions::default(), q, t) {
        if let promql::Value::Vector(series) = result.value {
            for s in series {
                if let Some(Some(v)) = s.values.first() {
                    let key = keys
                        .iter()
                        .map(|k| s.labels.get(k).unwrap_or("").to_string())
                        .collect();
                    out.insert(key, *v);
                }
            }
        }
    }
    out
}

fn bare(table: &str) -> String {
    table
        .rsplit('.')
        .next()
        .unwrap_or(table)
        .trim_matches(['"', '`'])
        .to_ascii_lowercase()
}

/// `slow` lists (template, tables) of the slow templates.
pub fn analyse(
    store: &MetricsStore,
    start_ms: i64,
    end_ms: i64,
    slow: &[(String, Vec<String>)],
) -> Value {
    let window = format!("{}s", ((end_ms - start_ms) / 1000).max(60));
    let index_keys = ["datname", "schemaname", "relname", "indexrelname"];
    let table_keys = ["datname", "schemaname", "relname"];
    let touching = |relname: &str| -> Vec<String> {
        slow.iter()
            .filter(|(_, tables)| {
                tables
                    .iter()
                    .any(|t| bare(t) == relname.to_ascii_lowercase())
            })
            .map(|(t, _)| t.clone())
            .collect()
    };
    // Indexes present over the whole window and never scanned in it.
    let scans = query(
        store,
        &format!("increase(pg_stat_user_indexes_idx_scan[{window}])"),
        end_ms,
        &index_keys,
    );
    let unused: Vec<Value> = scans
        .iter()
        .filter(|(_, v)| **v == 0.0)
        .map(|(k, _)| {
            json!({
                "database": k[0], "schema": k[1], "table": k[2], "index": k[3],
                "advice": "not scanned once in the window: if no constraint needs it, dropping it saves its writes and space",
            })
        })
        .collect();
    let seq = query(
        store,
        &format!("increase(pg_stat_user_tables_seq_scan[{window}])"),
        end_ms,
        &table_keys,
    );
    let idx = query(
        store,
        &format!("increase(pg_stat_user_tables_idx_scan[{window}])"),
        end_ms,
        &table_keys,
    );
    let rows = query(
        store,
        &format!("increase(pg_stat_user_tables_seq_tup_read[{window}])"),
        end_ms,
        &table_keys,
    );
    let mut sequential = Vec::new();
    for (k, s) in &seq {
        let i = idx.get(k).copied().unwrap_or(0.0);
        let read = rows.get(k).copied().unwrap_or(0.0);
        if *s > 0.0 && *s / (*s + i) >= 0.5 && read >= MIN_SEQ_ROWS {
            sequential.push(json!({
                "database": k[0], "schema": k[1], "table": k[2],
                "seq_scans": s, "idx_scans": i, "rows_read_sequentially": read,
                "sequential_share": s / (s + i),
                "slow_templates": touching(&k[2]),
                "advice": "read mostly by sequential scans: see the index candidates of the slow templates that touch it",
            }));
        }
    }
    json!({"unused_indexes": unused, "sequentially_scanned_tables": sequential, "exporter_series_found": !seq.is_empty() || !scans.is_empty()})
}

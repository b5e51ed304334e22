//! Database connection pools from the OpenTelemetry `db.client.connection.*`
//! metrics as Prometheus' OTLP translation names them (and the older
//! `db.client.connections.*`): per pool, over the window, the connections
//! in use against the maximum, pending requests, timeouts, mean wait and
//! use times, and a size from Little's law: connections needed = checkout
//! rate × mean time held, at the busiest 5 minutes, plus 25 % headroom,
//! checked against the waits and timeouts actually seen.
//!
//! Evaluated with Oxeye's PromQL engine over the metrics store, one query
//! per figure (all pools at once).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::query::promql::{self, EngineOptions};
use crate::storage::metrics::MetricsStore;

/// The names of one generation of the conventions.
struct Names {
    count: &'static str,
    state: &'static str,
    pool: &'static str,
    max: &'static str,
    pending: &'static str,
    timeouts: &'static str,
    wait: &'static str,
    use_time: &'static str,
    /// Seconds per unit of the histograms.
    unit: f64,
}

const CURRENT: Names = Names {
    count: "db_client_connection_count",
    state: "db_client_connection_state",
    pool: "db_client_connection_pool_name",
    max: "db_client_connection_max",
    pending: "db_client_connection_pending_requests",
    timeouts: "db_client_connection_timeouts_total",
    wait: "db_client_connection_wait_time_seconds",
    use_time: "db_client_connection_use_time_seconds",
    unit: 1.0,
};

const OLDER: Names = Names {
    count: "db_client_connections_usage",
    state: "state",
    pool: "pool_name",
    max: "db_client_connections_max",
    pending: "db_client_connections_pending_requests",
    timeouts: "db_client_connections_timeouts_total",
    wait: "db_client_connections_wait_time_milliseconds",
    use_time: "db_client_connections_use_time_milliseconds",
    unit: 0.001,
};

/// `query` at `t` (ms): pool name → value.
fn per_pool(store: &MetricsStore, query: &str, pool: &str, t: i64) -> BTreeMap<String, f64> {
    let options = EngineOptions::default();
    let mut out = BTreeMap::new();
    if let Ok(result) = promql::instant_query(store, &options, query, t) {
        if let promql::Value::Vector(series) = result.value {
            for s in series {
                if let Some(Some(v)) = s.values.first() {
                    if v.is_finite() {
                        out.insert(s.labels.get(pool).unwrap_or("").to_string(), *v);
                    }
                }
            }
        }
    }
    out
}

/// Every pool seen in `[start_ms, end_ms]`.
pub fn analyse(store: &MetricsStore, start_ms: i64, end_ms: i64) -> Value {
    let window = format!("{}s", ((end_ms - start_ms) / 1000).max(60));
    let mut pools = Vec::new();
    for n in [&CURRENT, &OLDER] {
        let q = |query: String| per_pool(store, &query, n.pool, end_ms);
        let used = format!(
            "sum by ({p}) ({c}{{{s}=\"used\"}})",
            p = n.pool,
            c = n.count,
            s = n.state
        );
        let max_used = q(format!("max_over_time(({used})[{window}:1m])"));
        if max_used.is_empty() {
            continue;
        }
        let p95_used = q(format!("quantile_over_time(0.95, ({used})[{window}:1m])"));
        let max = q(format!(
            "max by ({p}) (max_over_time({m}[{window}]))",
            p = n.pool,
            m = n.max
        ));
        let pending = q(format!(
            "max by ({p}) (max_over_time({m}[{window}]))",
            p = n.pool,
            m = n.pending
        ));
        let timeouts = q(format!(
            "sum by ({p}) (increase({m}[{window}]))",
            p = n.pool,
            m = n.timeouts
        ));
        let mean = |hist: &str| {
            q(format!(
                "sum by ({p}) (increase({h}_sum[{window}])) / sum by ({p}) (increase({h}_count[{window}]))",
                p = n.pool,
                h = hist
            ))
        };
        let wait = mean(n.wait);
        let hold = mean(n.use_time);
        // Little's law at the busiest 5 minutes: checkouts per second × mean hold.
        let busiest = q(format!(
            "max_over_time((sum by ({p}) (rate({h}_sum[5m])))[{window}:1m])",
            p = n.pool,
            h = n.use_time
        ));
        let checkouts = q(format!(
            "sum by ({p}) (rate({h}_count[{window}]))",
            p = n.pool,
            h = n.use_time
        ));
        for (pool, peak_used) in max_used {
            let get = |m: &BTreeMap<String, f64>| m.get(&pool).copied();
            // rate(sum) is connection-seconds held per second: L = λW.
            let little_peak = get(&busiest).map(|v| v * n.unit);
            let little_mean = match (get(&checkouts), get(&hold)) {
                (Some(l), Some(w)) => Some(l * w * n.unit),
                _ => None,
            };
            let needed = little_peak
                .unwrap_or(0.0)
                .max(get(&p95_used).unwrap_or(0.0));
            let suggested = ((needed * 1.25).ceil() as u64).max(2);
            let max_now = get(&max);
            let waits = get(&wait).map(|w| w * n.unit);
            let timeouts_n = get(&timeouts).unwrap_or(0.0);
            let pending_max = get(&pending).unwrap_or(0.0);
            let verdict = if timeouts_n > 0.0
                || pending_max > 0.0
                || waits.is_some_and(|w| w > 0.010)
            {
                format!(
                    "too small: {timeouts_n:.0} timeouts, up to {pending_max:.0} requests waiting{}; grow to {}",
                    waits.map_or(String::new(), |w| format!(", mean wait {:.1} ms", w * 1000.0)),
                    suggested.max(max_now.unwrap_or(0.0) as u64 + 1)
                )
            } else if max_now.is_some_and(|m| m >= 2.0 * suggested as f64) {
                format!("oversized: at most {peak_used:.0} in use; {suggested} would do")
            } else {
                "fits: no waits or timeouts, and not much larger than needed".to_string()
            };
            pools.push(json!({
                "pool": pool,
                "max": max_now,
                "peak_used": peak_used,
                "p95_used": get(&p95_used),
                "utilisation_peak": max_now.filter(|m| *m > 0.0).map(|m| peak_used / m),
                "pending_requests_max": pending_max,
                "timeouts": timeouts_n,
                "mean_wait_seconds": waits,
                "mean_use_seconds": get(&hold).map(|h| h * n.unit),
                "littles_law_mean": little_mean,
                "littles_law_busiest_5m": little_peak,
                "suggested_max": suggested,
                "verdict": verdict,
            }));
        }
    }
    json!(pools)
}

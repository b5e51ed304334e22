//! The results cache's own metrics (`oxeye_results_cache_*` in /metrics
//! and the Status page).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub backend: String,
    /// `promql`, `logs` or `traces`.
    pub cache: String,
    /// `hit` (every cacheable point found), `partial` or `miss`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub backend: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub backend: String,
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PointLabels {
    /// `cache` or `evaluated`.
    pub source: String,
}

type LatencyTotals = HashMap<(String, &'static str), (u64, f64)>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 3.0, 12))
}

#[derive(Clone)]
pub struct CacheMetrics {
    pub lookups: Family<LookupLabels, Counter>,
    pub points: Family<PointLabels, Counter>,
    pub stored_bytes: Family<BackendLabels, Counter>,
    pub entries: Family<BackendLabels, Gauge>,
    pub bytes: Family<BackendLabels, Gauge>,
    pub evictions: Family<BackendLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub skipped: Family<BackendLabels, Counter>,
    pub latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    /// (backend, operation) → (round trips, seconds), for the Status page
    /// (the histogram does not expose its sum).
    latency_totals: Arc<Mutex<LatencyTotals>>,
}

impl std::fmt::Debug for CacheMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheMetrics")
    }
}

impl Default for CacheMetrics {
    fn default() -> Self {
        CacheMetrics {
            lookups: Family::default(),
            points: Family::default(),
            stored_bytes: Family::default(),
            entries: Family::default(),
            bytes: Family::default(),
            evictions: Family::default(),
            errors: Family::default(),
            skipped: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            latency_totals: Arc::default(),
        }
    }
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> CacheMetrics {
        let m = CacheMetrics::default();
        registry.register(
            "results_cache_lookups",
            "Results cache lookups of one split interval, by backend, cache and result (hit, partial, miss)",
            m.lookups.clone(),
        );
        registry.register(
            "results_cache_points",
            "Points of range query answers, by source (cache, evaluated)",
            m.points.clone(),
        );
        registry.register(
            "results_cache_stored_bytes",
            "Compressed bytes written to the results cache",
            m.stored_bytes.clone(),
        );
        registry.register(
            "results_cache_entries",
            "Entries in the in-process results cache",
            m.entries.clone(),
        );
        registry.register(
            "results_cache_bytes",
            "Bytes held by the in-process results cache",
            m.bytes.clone(),
        );
        registry.register(
            "results_cache_evictions",
            "Entries evicted from the results cache to stay within cache.max_bytes",
            m.evictions.clone(),
        );
        registry.register(
            "results_cache_errors",
            "Results cache backend errors (each one answered as a miss), by kind",
            m.errors.clone(),
        );
        registry.register(
            "results_cache_skipped",
            "Entries not cached: larger than cache.max_entry_bytes",
            m.skipped.clone(),
        );
        registry.register(
            "results_cache_request_duration_seconds",
            "Results cache backend round trips, by operation",
            m.latency.clone(),
        );
        m
    }

    pub fn lookup(&self, backend: &str, cache: &str, result: &str) {
        self.lookups
            .get_or_create(&LookupLabels {
                backend: backend.into(),
                cache: cache.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn points(&self, source: &str, count: u64) {
        self.points
            .get_or_create(&PointLabels {
                source: source.into(),
            })
            .inc_by(count);
    }

    pub fn error(&self, backend: &str, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                backend: backend.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn evicted(&self, backend: &str) {
        self.evictions
            .get_or_create(&BackendLabels {
                backend: backend.into(),
            })
            .inc();
    }

    pub fn stored(&self, backend: &str, bytes: u64) {
        self.stored_bytes
            .get_or_create(&BackendLabels {
                backend: backend.into(),
            })
            .inc_by(bytes);
    }

    pub fn skipped(&self, backend: &str) {
        self.skipped
            .get_or_create(&BackendLabels {
                backend: backend.into(),
            })
            .inc();
    }

    pub fn observe(&self, backend: &str, op: &'static str, seconds: f64) {
        let mut totals = self.latency_totals.lock();
        let t = totals.entry((backend.to_owned(), op)).or_default();
        t.0 += 1;
        t.1 += seconds;
        drop(totals);
        self.latency
            .get_or_create(&OpLabels {
                backend: backend.into(),
                op: op.into(),
            })
            .observe(seconds);
    }

    /// Counts for the Status page: (cache, result) → lookups; errors by
    /// kind; evictions; mean Redis round trip (seconds) per operation.
    pub fn summary(&self, backend: &str) -> CacheSummary {
        let mut s = CacheSummary::default();
        for cache in ["promql", "logs", "traces"] {
            let get = |result: &str| {
                self.lookups
                    .get(&LookupLabels {
                        backend: backend.into(),
                        cache: cache.into(),
                        result: result.into(),
                    })
                    .map_or(0, |c| c.get())
            };
            s.lookups
                .push((cache, get("hit"), get("partial"), get("miss")));
        }
        for kind in ["connect", "timeout", "command", "reply", "decode"] {
            let n = self
                .errors
                .get(&ErrorLabels {
                    backend: backend.into(),
                    kind: kind.into(),
                })
                .map_or(0, |c| c.get());
            if n > 0 {
                s.errors.push((kind, n));
            }
        }
        let b = BackendLabels {
            backend: backend.into(),
        };
        s.evictions = self.evictions.get(&b).map_or(0, |c| c.get());
        s.stored_bytes = self.stored_bytes.get(&b).map_or(0, |c| c.get());
        s.skipped = self.skipped.get(&b).map_or(0, |c| c.get());
        let point = |source: &str| {
            self.points
                .get(&PointLabels {
                    source: source.into(),
                })
                .map_or(0, |c| c.get())
        };
        s.points_cached = point("cache");
        s.points_evaluated = point("evaluated");
        let totals = self.latency_totals.lock();
        for op in ["get", "set"] {
            if let Some((count, sum)) = totals.get(&(backend.to_owned(), op)) {
                s.latency.push((op, *count, sum / (*count).max(1) as f64));
            }
        }
        s
    }
}

#[derive(Debug, Default)]
pub struct CacheSummary {
    /// (cache, hits, partial hits, misses)
    pub lookups: Vec<(&'static str, u64, u64, u64)>,
    pub errors: Vec<(&'static str, u64)>,
    pub evictions: u64,
    pub stored_bytes: u64,
    pub skipped: u64,
    pub points_cached: u64,
    pub points_evaluated: u64,
    /// (operation, round trips, mean seconds)
    pub latency: Vec<(&'static str, u64, f64)>,
}

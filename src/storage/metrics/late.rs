//! Late writes: accepted samples older than a threshold before "now" — a
//! backfill, an out-of-order sample, a new series with old data. A results
//! cache that keeps evaluations of the past asks this log which of them a
//! later write could have changed.
//!
//! A PromQL evaluation at `t` reads samples at or before `t` (offsets only
//! look further back; the cache does not keep queries with negative
//! offsets or `@`), so a write whose oldest sample is at `min_t` can change
//! the points at `t >= min_t` of anything computed before the write was
//! recorded — and nothing else.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};

/// Entries kept; beyond it the two oldest are merged into one that covers
/// both (conservative: it truncates at least as much as they did).
const MAX_ENTRIES: usize = 1024;

/// A late write: recorded at `recorded_ns` (wall clock, nanoseconds, after
/// the samples became readable), its oldest sample at `min_t` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateWrite {
    pub recorded_ns: i64,
    pub min_t: i64,
}

#[derive(Debug)]
pub struct LateWrites {
    /// Samples older than `now - threshold` are late; `i64::MAX` (the
    /// default) records nothing, for a server without a results cache.
    threshold_ms: AtomicI64,
    /// How long an entry matters (the cache's entry lifetime).
    keep_ms: AtomicI64,
    log: Mutex<VecDeque<LateWrite>>,
}

impl Default for LateWrites {
    fn default() -> Self {
        LateWrites {
            threshold_ms: AtomicI64::new(i64::MAX),
            keep_ms: AtomicI64::new(i64::MAX),
            log: Mutex::new(VecDeque::new()),
        }
    }
}

impl LateWrites {
    /// Record writes with samples older than `threshold_ms` before now,
    /// and keep each record for `keep_ms`.
    pub fn track(&self, threshold_ms: i64, keep_ms: i64) {
        self.threshold_ms
            .store(threshold_ms.max(0), Ordering::Relaxed);
        self.keep_ms.store(keep_ms.max(0), Ordering::Relaxed);
    }

    /// A write whose oldest accepted sample is `min_t` (ms) became
    /// readable; now is `now_ns`. Nanoseconds, so that an evaluation that
    /// begins right after the write is not taken for one that could have
    /// missed it (equal times count as "after").
    pub fn note(&self, min_t: i64, now_ns: i64) {
        let threshold = self.threshold_ms.load(Ordering::Relaxed);
        if threshold == i64::MAX || min_t >= (now_ns / 1_000_000).saturating_sub(threshold) {
            return;
        }
        let keep_ns = self
            .keep_ms
            .load(Ordering::Relaxed)
            .saturating_mul(1_000_000);
        let mut log = self.log.lock();
        while log
            .front()
            .is_some_and(|w| w.recorded_ns < now_ns.saturating_sub(keep_ns))
        {
            log.pop_front();
        }
        if log.len() >= MAX_ENTRIES {
            if let (Some(a), Some(b)) = (log.pop_front(), log.pop_front()) {
                log.push_front(LateWrite {
                    recorded_ns: b.recorded_ns,
                    min_t: a.min_t.min(b.min_t),
                });
            }
        }
        log.push_back(LateWrite {
            recorded_ns: now_ns,
            min_t,
        });
    }

    /// The oldest sample time written late at or after `since_ns`, if any:
    /// what was computed at `since_ns` holds for points before it.
    pub fn oldest_since(&self, since_ns: i64) -> Option<i64> {
        self.log
            .lock()
            .iter()
            .filter(|w| w.recorded_ns >= since_ns)
            .map(|w| w.min_t)
            .min()
    }

    pub fn len(&self) -> usize {
        self.log.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Notes the oldest time it saw in a log when dropped (after the write
/// became readable, on every way out of it).
pub struct NoteOnDrop<'a> {
    late: &'a LateWrites,
    oldest: i64,
}

impl<'a> NoteOnDrop<'a> {
    pub fn new(late: &'a LateWrites) -> Self {
        NoteOnDrop {
            late,
            oldest: i64::MAX,
        }
    }

    pub fn saw(&mut self, t: i64) {
        self.oldest = self.oldest.min(t);
    }
}

impl Drop for NoteOnDrop<'_> {
    fn drop(&mut self) {
        if self.oldest != i64::MAX {
            self.late.note(self.oldest, crate::now_ns());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_writes_older_than_the_threshold() {
        let late = LateWrites::default();
        const MS: i64 = 1_000_000;
        late.note(0, 1_000_000 * MS);
        assert!(late.is_empty(), "untracked by default");
        late.track(600_000, 86_400_000);
        late.note(1_000_000 - 600_000, 1_000_000 * MS);
        assert!(late.is_empty(), "exactly at the threshold is fresh");
        late.note(1_000, 1_000_000 * MS);
        late.note(5_000, 1_000_100 * MS);
        assert_eq!(late.oldest_since(0), Some(1_000));
        assert_eq!(late.oldest_since(1_000_001 * MS), Some(5_000));
        assert_eq!(
            late.oldest_since(1_000_100 * MS),
            Some(5_000),
            "same time: after"
        );
        assert_eq!(late.oldest_since(1_000_100 * MS + 1), None);
    }

    #[test]
    fn merging_stays_conservative_and_old_entries_expire() {
        const MS: i64 = 1_000_000;
        let late = LateWrites::default();
        late.track(0, 10_000);
        for i in 0..(MAX_ENTRIES as i64 + 10) {
            late.note(1_000_000 - i, (2_000_000 + i) * MS);
        }
        assert_eq!(late.len(), MAX_ENTRIES);
        // Whatever was computed before the last write sees the oldest of all.
        assert_eq!(
            late.oldest_since(2_000_000 * MS),
            Some(1_000_000 - (MAX_ENTRIES as i64 + 9))
        );
        // Ten seconds later only the recent entries remain.
        late.note(0, 2_100_000 * MS);
        assert_eq!(late.len(), 1);
    }
}

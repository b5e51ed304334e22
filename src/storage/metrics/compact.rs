//! Block compaction: head cuts, out-of-order writes and admin flushes leave
//! many small blocks; they are merged into larger, time-aligned ones, in
//! levels as Prometheus does (by default 2h → 6h → 24h: each level's range
//! is a multiple of the one before, ranges above a tenth of the retention
//! are not used, so retention keeps deleting in steps of at most a tenth).
//!
//! **Plan.** For each level from the smallest, the blocks lying wholly inside
//! one aligned window of that level's range are merged when there are two or
//! more of them and the window is over (some block starts at or after its
//! end). One merge per call to [`MetricsStore::compact`] step, repeated
//! until nothing is left to do or [`MAX_MERGES`] were done.
//!
//! **Merge.** Series by series (ids in order): every source block's samples
//! decoded and merged in time order, equal timestamps once, re-encoded in
//! one row per block-duration window (a 1h query over a 24h block decodes
//! one or two rows of each series, not the day). The
//! new block records its sources in `meta.json` (`compacted_from`); it is
//! written to `tmp-…` and renamed into place, then published in place of its
//! sources in one step under the blocks lock, and only then are the sources'
//! directories deleted. A crash after the rename leaves both on disk:
//! opening the store deletes sources a complete block names. Readers hold
//! their own list of blocks, so a query running across a merge sees the old
//! blocks or the new one, never both and never neither: every sample once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::block::{self, Block};
use super::head::merge_sorted;
use super::{MetricsStore, StorageError};
use crate::model::Sample;

/// Merges done per call at most, so a backlog of small blocks is worked
/// through over several maintenance rounds and a cut never waits long.
pub const MAX_MERGES: usize = 8;

/// What one merge did, for logs and tests.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CompactReport {
    pub merged: Vec<String>,
    pub into: String,
    pub series: u64,
    pub samples: u64,
    pub bytes: u64,
}

/// The level ranges for a block duration and retention, in ms.
pub fn level_ranges(block_ms: i64, retention_ms: i64) -> Vec<i64> {
    let mut ranges = vec![block_ms];
    for factor in [3, 4, 3] {
        let next = ranges[ranges.len() - 1].saturating_mul(factor);
        if next > retention_ms / 10 || next > 31 * 24 * 3_600_000 {
            break;
        }
        ranges.push(next);
    }
    ranges
}

/// The next group to merge: the blocks of one finished window, two or more.
pub fn plan(blocks: &[Arc<Block>], ranges: &[i64]) -> Option<Vec<Arc<Block>>> {
    let newest = blocks.iter().map(|b| b.meta.max_t).max()?;
    for &range in ranges {
        let mut windows: std::collections::BTreeMap<i64, Vec<Arc<Block>>> = Default::default();
        for b in blocks {
            let window = b.meta.min_t.div_euclid(range);
            if b.meta.max_t.div_euclid(range) == window {
                windows.entry(window).or_default().push(b.clone());
            }
        }
        for (window, group) in windows {
            let end = window.saturating_add(1).saturating_mul(range);
            if group.len() >= 2 && newest >= end {
                return Some(group);
            }
        }
    }
    None
}

/// CPU time of the calling thread in microseconds (Linux; 0 elsewhere).
fn thread_cpu_micros() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0;
    };
    // Fields after the command name (which may contain spaces): utime is
    // the 14th field overall, stime the 15th, in clock ticks (100 Hz).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10_000
}

impl MetricsStore {
    /// Merge small blocks into larger ones (see the module docs); returns
    /// what was merged.
    pub fn compact(&self) -> Result<Vec<CompactReport>, StorageError> {
        let _guard = self.maintenance.lock();
        self.compact_locked()
    }

    pub(super) fn compact_locked(&self) -> Result<Vec<CompactReport>, StorageError> {
        let ranges = level_ranges(self.options.block_duration_ms, self.options.retention_ms);
        let mut reports = Vec::new();
        for _ in 0..MAX_MERGES {
            let group = {
                let blocks = self.blocks.read();
                plan(&blocks, &ranges)
            };
            let Some(group) = group else { break };
            let started = Instant::now();
            let cpu = thread_cpu_micros();
            match self.merge(&group) {
                Ok(report) => {
                    let s = &self.stats;
                    s.compactions.fetch_add(1, Ordering::Relaxed);
                    s.compaction_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    s.compaction_cpu_micros
                        .fetch_add(thread_cpu_micros().saturating_sub(cpu), Ordering::Relaxed);
                    s.compaction_bytes
                        .fetch_add(report.bytes, Ordering::Relaxed);
                    tracing::info!(
                        sources = report.merged.len(),
                        into = %report.into,
                        series = report.series,
                        samples = report.samples,
                        bytes = report.bytes,
                        took = ?started.elapsed(),
                        "blocks compacted"
                    );
                    reports.push(report);
                }
                Err(err) => {
                    self.stats
                        .compaction_failures
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(err);
                }
            }
        }
        Ok(reports)
    }

    fn merge(&self, group: &[Arc<Block>]) -> Result<CompactReport, StorageError> {
        let row_ms = self.options.block_duration_ms.max(1);
        let mut ids = roaring::RoaringBitmap::new();
        for b in group {
            ids |= &b.series;
        }
        let mut encoded = Vec::with_capacity(ids.len() as usize);
        let mut report = CompactReport {
            merged: group.iter().map(|b| b.name.clone()).collect(),
            ..Default::default()
        };
        let mut part: Vec<Sample> = Vec::new();
        for id in &ids {
            let mut samples: Vec<Sample> = Vec::new();
            for b in group {
                part.clear();
                b.samples(id, i64::MIN, i64::MAX, &mut part);
                if !part.is_empty() {
                    samples = merge_sorted(samples, std::mem::take(&mut part));
                }
            }
            // One row per block-duration window, so that a short query
            // over a long block decodes only the rows it needs.
            let mut rest = samples.as_slice();
            if !rest.is_empty() {
                report.series += 1;
                report.samples += rest.len() as u64;
            }
            while let Some(first) = rest.first() {
                let window = first.t.div_euclid(row_ms);
                let end = rest
                    .iter()
                    .position(|s| s.t.div_euclid(row_ms) != window)
                    .unwrap_or(rest.len());
                if let Some(row) = block::EncodedSeries::encode(id, &rest[..end]) {
                    encoded.push(row);
                }
                rest = &rest[end..];
            }
        }
        let checkpoint = group
            .iter()
            .map(|b| b.meta.wal_checkpoint)
            .max()
            .unwrap_or(0);
        let dir = block::write_compacted_block(
            &self.options.dir.join("blocks"),
            &encoded,
            checkpoint,
            &report.merged,
        )?;
        let merged = match Block::open(&dir) {
            Ok(block) => Arc::new(block),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(err.into());
            }
        };
        report.into = merged.name.clone();
        report.bytes = merged.disk_bytes;
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
            blocks.push(merged);
            blocks.sort_by_key(|b| (b.meta.min_t, b.meta.max_t));
        }
        for b in group {
            if let Err(err) = std::fs::remove_dir_all(&b.dir) {
                // Opening the store deletes it (the new block names it).
                tracing::warn!(block = %b.name, error = %err, "cannot remove a compacted block");
            }
        }
        self.stats
            .blocks_deleted
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_block_duration_and_stop_at_a_tenth_of_retention() {
        let h = 3_600_000;
        assert_eq!(level_ranges(2 * h, 15 * 24 * h), vec![2 * h, 6 * h, 24 * h]);
        assert_eq!(level_ranges(2 * h, 2 * 24 * h), vec![2 * h]);
        assert_eq!(
            level_ranges(2 * h, 3650 * 24 * h),
            vec![2 * h, 6 * h, 24 * h, 72 * h]
        );
    }
}

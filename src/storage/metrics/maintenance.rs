//! Head cuts and retention: turning the in-memory head into immutable blocks
//! (see the module docs of `storage::metrics` for the ordering that keeps
//! every sample readable and durable throughout) and deleting expired blocks.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::block::{self, Block};
use super::wal_record::RecordBuilder;
use super::{CutReport, Frozen, MetricsStore, StorageError};
use crate::model::Sample;

impl MetricsStore {
    /// Cut the whole head into blocks now.
    pub fn flush(&self) -> Result<CutReport, StorageError> {
        let _guard = self.maintenance.lock();
        self.cut_locked()
    }

    /// Periodic work: cut the head when it spans a block, apply retention.
    pub fn maintain(&self, now_ms: i64) -> Result<(), StorageError> {
        let _guard = self.maintenance.lock();
        let (min_t, max_t) = {
            let head = self.head.read();
            (head.min_t, head.max_t)
        };
        let spans_block = max_t >= min_t && max_t - min_t >= self.options.block_duration_ms;
        // A head nobody writes to any more is cut once it is a block old.
        let idle = max_t >= min_t && now_ms - max_t >= self.options.block_duration_ms;
        if spans_block || idle {
            let report = self.cut_locked()?;
            tracing::info!(
                blocks = report.blocks.len(),
                samples = report.samples,
                "head cut"
            );
        }
        self.apply_retention(now_ms)?;
        self.compact_locked()?;
        Ok(())
    }

    fn apply_retention(&self, now_ms: i64) -> Result<(), StorageError> {
        let cutoff = now_ms.saturating_sub(self.options.retention_ms);
        let expired: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write();
            let (expired, kept): (Vec<_>, Vec<_>) =
                blocks.drain(..).partition(|b| b.meta.max_t < cutoff);
            *blocks = kept;
            expired
        };
        let mut candidates = roaring::RoaringBitmap::new();
        for block in expired {
            tracing::info!(block = %block.name, max_t = block.meta.max_t, "deleting block past retention");
            candidates |= &block.series;
            std::fs::remove_dir_all(&block.dir)?;
            self.stats.blocks_deleted.fetch_add(1, Ordering::Relaxed);
        }
        if !candidates.is_empty() {
            self.forget_series(candidates)?;
        }
        Ok(())
    }

    /// Remove series with no data left anywhere (retention deleted their
    /// last block, and neither the head nor the frozen head holds samples)
    /// from the postings, the hash index and sled, so that they no longer
    /// count against `limits.max_active_series` or show in label APIs.
    /// Their ids are not reused.
    fn forget_series(&self, candidates: roaring::RoaringBitmap) -> Result<(), StorageError> {
        let mut still_held = roaring::RoaringBitmap::new();
        for block in self.blocks.read().iter() {
            still_held |= &block.series;
        }
        if let Some(frozen) = self.frozen.read().as_ref() {
            still_held.extend(frozen.series.iter().map(|(id, _)| *id));
        }
        let mut head = self.head.write();
        let state = &mut *head;
        let mut dead = Vec::new();
        let mut emptied = Vec::new();
        for id in &(candidates - still_held) {
            let Some(entry) = state.series.get(id as usize) else {
                continue;
            };
            if !entry.head.is_empty() || entry.labels.is_empty() {
                continue;
            }
            let labels = entry.labels.clone();
            emptied.extend(state.postings.remove(id, &labels));
            state.forget(id, &labels);
            dead.push(id);
        }
        if dead.is_empty() {
            return Ok(());
        }
        self.index
            .remove_series(&dead, &emptied, &state.postings, state.series.len() as u32)?;
        tracing::info!(
            series = dead.len(),
            "series with no data left removed from the index"
        );
        Ok(())
    }

    fn cut_locked(&self) -> Result<CutReport, StorageError> {
        // 0. A cut that failed earlier (disk full, …) left its frozen head
        //    readable and its WAL segments in place: write it first, and take
        //    no new head until it is in blocks.
        let pending = self.frozen.read().clone();
        let earlier = match pending {
            Some(frozen) => {
                let report = self.write_frozen(&frozen)?;
                tracing::info!(
                    blocks = report.blocks.len(),
                    "an earlier failed head cut is now written"
                );
                report
            }
            None => CutReport::default(),
        };
        // 1. Swap the head out and rotate the WAL atomically w.r.t. appends.
        let frozen = {
            let mut head = self.head.write();
            let checkpoint = self.wal.cut()?;
            let mut taken = Vec::new();
            for (id, entry) in head.series.iter_mut().enumerate() {
                if !entry.head.is_empty() {
                    taken.push((id as u32, std::mem::take(&mut entry.head)));
                }
            }
            // max_t stays: the out-of-order window keeps counting from it.
            head.min_t = i64::MAX;
            let frozen = Arc::new(Frozen {
                series: taken,
                checkpoint,
                postings_upto: head.series.len() as u32,
            });
            *self.frozen.write() = Some(frozen.clone());
            frozen
        };
        // Exemplars live only in the WAL; carry them into the new segment.
        let mut exemplar_record = RecordBuilder::default();
        for (id, exemplar) in &self.exemplars.lock().items {
            exemplar_record.add_exemplar(*id, exemplar);
        }
        for record in exemplar_record.records() {
            self.wal.append(record)?;
        }
        self.wal.sync_all()?;
        let mut report = self.write_frozen(&frozen)?;
        report.blocks.extend(earlier.blocks);
        report.series += earlier.series;
        report.samples += earlier.samples;
        Ok(report)
    }

    /// Steps 2–4 of a cut: index checkpoint, blocks, publication, WAL
    /// cleanup. On failure nothing is half-done: blocks written by this
    /// attempt are removed again (a block on disk tells replay to skip the
    /// WAL before its checkpoint, so a partial set would lose the rest), the
    /// frozen head stays readable, and the WAL segments stay.
    fn write_frozen(&self, frozen: &Frozen) -> Result<CutReport, StorageError> {
        // 2. Persist the index before blocks whose checkpoint lets replay
        //    skip the WAL segments that could rebuild it.
        {
            let head = self.head.read();
            self.index
                .checkpoint_postings(&head.postings, frozen.postings_upto)?;
        }

        // 3. One block per aligned time window. Series are decoded one at a
        //    time and re-encoded at once, so the cut holds compressed chunks,
        //    never the head's samples all decoded (16 bytes each).
        let mut report = CutReport::default();
        let mut windows: std::collections::BTreeMap<i64, Vec<block::EncodedSeries>> =
            Default::default();
        let mut samples: Vec<Sample> = Vec::new();
        for (id, series) in &frozen.series {
            samples.clear();
            series.samples(i64::MIN, i64::MAX, &mut samples);
            report.series += 1;
            report.samples += samples.len() as u64;
            let mut start = 0;
            while start < samples.len() {
                let window = samples[start].t.div_euclid(self.options.block_duration_ms);
                let end = samples[start..]
                    .iter()
                    .position(|s| s.t.div_euclid(self.options.block_duration_ms) != window)
                    .map_or(samples.len(), |p| start + p);
                if let Some(encoded) = block::EncodedSeries::encode(*id, &samples[start..end]) {
                    windows.entry(window).or_default().push(encoded);
                }
                start = end;
            }
        }
        let blocks_dir = self.options.dir.join("blocks");
        let mut new_blocks = Vec::new();
        let mut written = Vec::new();
        for series in windows.values() {
            let opened = block::write_encoded_block(&blocks_dir, series, frozen.checkpoint)
                .map_err(StorageError::from)
                .and_then(|dir| {
                    written.push(dir.clone());
                    Block::open(&dir).map_err(StorageError::from)
                });
            match opened {
                Ok(block) => {
                    report.blocks.push(block.name.clone());
                    new_blocks.push(Arc::new(block));
                }
                Err(err) => {
                    drop(new_blocks);
                    for dir in &written {
                        if let Err(remove) = std::fs::remove_dir_all(dir) {
                            tracing::error!(block = %dir.display(), error = %remove, "cannot remove a block of a failed head cut");
                        }
                    }
                    tracing::error!(error = %err, "head cut failed; the head stays in memory and in the WAL, and the cut is retried");
                    return Err(err);
                }
            }
        }
        self.stats
            .blocks_written
            .fetch_add(new_blocks.len() as u64, Ordering::Relaxed);
        // 4. Publish the blocks, then drop the frozen head (readers check
        //    frozen before blocks, so they never miss the data).
        {
            let mut blocks = self.blocks.write();
            blocks.extend(new_blocks);
            blocks.sort_by_key(|b| (b.meta.min_t, b.meta.max_t));
            *self.frozen.write() = None;
        }
        if !report.blocks.is_empty() {
            self.wal.remove_before(frozen.checkpoint)?;
        }
        Ok(report)
    }
}

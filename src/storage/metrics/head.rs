//! The in-memory head: recent samples of each series in compressed chunks,
//! plus a small unsorted buffer for out-of-order samples.

use super::chunk::{ChunkEncoder, ChunkIter, SAMPLES_PER_HEAD_CHUNK};
use crate::model::Sample;

/// A closed (full) head chunk.
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    /// Shared, so query snapshots copy a pointer, not the chunk.
    pub bytes: std::sync::Arc<[u8]>,
    pub count: u32,
    pub min_t: i64,
    pub max_t: i64,
}

/// The samples one series has in the head.
#[derive(Debug, Clone, Default)]
pub struct HeadSeries {
    pub closed: Vec<ClosedChunk>,
    pub open: Option<ChunkEncoder>,
    /// Accepted out-of-order samples, unsorted; merged when read or cut.
    pub out_of_order: Vec<Sample>,
}

impl HeadSeries {
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_none() && self.out_of_order.is_empty()
    }

    /// Append a sample newer than every in-order sample of the series.
    pub fn append_in_order(&mut self, t: i64, v: f64) {
        let open = self.open.get_or_insert_with(ChunkEncoder::new);
        open.append(t, v);
        if open.count() >= SAMPLES_PER_HEAD_CHUNK {
            let full = self.open.take().expect("open chunk");
            self.closed.push(ClosedChunk {
                count: full.count(),
                min_t: full.min_t(),
                max_t: full.max_t(),
                bytes: full.into_bytes().into(),
            });
        }
    }

    pub fn min_t(&self) -> Option<i64> {
        let chunk_min = self
            .closed
            .first()
            .map(|c| c.min_t)
            .or_else(|| self.open.as_ref().map(|o| o.min_t()));
        let ooo_min = self.out_of_order.iter().map(|s| s.t).min();
        match (chunk_min, ooo_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn max_t(&self) -> Option<i64> {
        let chunk_max = self
            .open
            .as_ref()
            .map(|o| o.max_t())
            .or_else(|| self.closed.last().map(|c| c.max_t));
        let ooo_max = self.out_of_order.iter().map(|s| s.t).max();
        match (chunk_max, ooo_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        match (self.min_t(), self.max_t()) {
            (Some(lo), Some(hi)) => lo <= maxt && hi >= mint,
            _ => false,
        }
    }

    pub fn sample_count(&self) -> u64 {
        self.closed.iter().map(|c| u64::from(c.count)).sum::<u64>()
            + self.open.as_ref().map_or(0, |o| u64::from(o.count()))
            + self.out_of_order.len() as u64
    }

    /// A cheap copy of the parts that overlap `[mint, maxt]`, to decode after
    /// the head lock is released.
    pub fn snapshot(&self, mint: i64, maxt: i64) -> HeadSeries {
        HeadSeries {
            closed: self
                .closed
                .iter()
                .filter(|c| c.min_t <= maxt && c.max_t >= mint)
                .cloned()
                .collect(),
            open: self
                .open
                .as_ref()
                .filter(|o| o.min_t() <= maxt && o.max_t() >= mint)
                .cloned(),
            out_of_order: self
                .out_of_order
                .iter()
                .filter(|s| s.t >= mint && s.t <= maxt)
                .copied()
                .collect(),
        }
    }

    /// Every sample in `[mint, maxt]`, sorted by time, one per timestamp.
    pub fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let start = out.len();
        for chunk in &self.closed {
            if chunk.min_t <= maxt && chunk.max_t >= mint {
                out.extend(
                    ChunkIter::new(&chunk.bytes, chunk.count)
                        .filter(|s| s.t >= mint && s.t <= maxt),
                );
            }
        }
        if let Some(open) = &self.open {
            out.extend(
                ChunkIter::new(open.bytes(), open.count()).filter(|s| s.t >= mint && s.t <= maxt),
            );
        }
        if !self.out_of_order.is_empty() {
            out.extend(
                self.out_of_order
                    .iter()
                    .filter(|s| s.t >= mint && s.t <= maxt),
            );
            // Stable sort: on equal timestamps the in-order sample comes first and wins.
            let mut merged = out.split_off(start);
            merged.sort_by_key(|s| s.t);
            merged.dedup_by_key(|s| s.t);
            out.extend_from_slice(&merged);
        }
    }
}

/// Merge two sorted sample lists; on equal timestamps the first list wins.
pub fn merge_sorted(a: Vec<Sample>, b: Vec<Sample>) -> Vec<Sample> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].t.cmp(&b[j].t) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_close_and_out_of_order_merges() {
        let mut series = HeadSeries::default();
        for i in 0..300 {
            series.append_in_order(i * 10, i as f64);
        }
        assert_eq!(series.closed.len(), 2);
        series.out_of_order.push(Sample { t: 5, v: -1.0 });
        series.out_of_order.push(Sample { t: 10, v: -2.0 });
        let mut out = Vec::new();
        series.samples(0, 30, &mut out);
        let ts: Vec<i64> = out.iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![0, 5, 10, 20, 30]);
        assert_eq!(series.min_t(), Some(0));
        assert_eq!(series.max_t(), Some(2990));
        assert_eq!(series.sample_count(), 302);
        let snap = series.snapshot(1500, 1600);
        assert_eq!(snap.closed.len(), 1);
        assert!(snap.open.is_none());
    }
}

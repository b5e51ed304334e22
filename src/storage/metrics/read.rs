//! The store's read side: series selection by matchers and time, label
//! names and values, samples, exemplars, metadata and statistics. Reads copy
//! what they need from the head under a read lock and decode outside it.

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::block::Block;
use super::head::{merge_sorted, HeadSeries};
use super::matcher::{self, Matcher};
use super::{Frozen, HeadState, IndexStats, MetricsStore, SeriesSamples, StoreSummary};
use crate::model::{Exemplar, Labels, MetricMetadata};

impl MetricsStore {
    /// Series ids with data in `[mint, maxt]`: exact for the head, whole
    /// blocks for blocks (a block overlapping the range contributes all of
    /// its series, as Prometheus' index does).
    fn ids_in_range(
        &self,
        state: &HeadState,
        frozen: Option<&Frozen>,
        mint: i64,
        maxt: i64,
    ) -> RoaringBitmap {
        let mut ids = RoaringBitmap::new();
        for (id, entry) in state.series.iter().enumerate() {
            if entry.head.overlaps(mint, maxt) {
                ids.insert(id as u32);
            }
        }
        if let Some(frozen) = frozen {
            for (id, series) in &frozen.series {
                if series.overlaps(mint, maxt) {
                    ids.insert(*id);
                }
            }
        }
        for block in self.blocks.read().iter() {
            if block.overlaps(mint, maxt) {
                ids |= &block.series;
            }
        }
        ids
    }

    /// Labels of the series matching any of the matcher sets with data in range.
    pub fn series(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<Arc<Labels>> {
        let head = self.head.read();
        let frozen = self.frozen.read().clone();
        let ids = self.matching_ids(&head, frozen.as_deref(), matcher_sets, mint, maxt);
        let mut out: Vec<Arc<Labels>> = ids
            .iter()
            .map(|id| head.series[id as usize].labels.clone())
            .collect();
        out.sort();
        out
    }

    fn matching_ids(
        &self,
        head: &HeadState,
        frozen: Option<&Frozen>,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> RoaringBitmap {
        let mut ids = if matcher_sets.is_empty() {
            head.postings.all().clone()
        } else {
            let mut ids = RoaringBitmap::new();
            for set in matcher_sets {
                ids |= matcher::select(&head.postings, set);
            }
            ids
        };
        ids &= self.ids_in_range(head, frozen, mint, maxt);
        ids
    }

    /// Label names of matching series with data in range, sorted.
    pub fn label_names(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let head = self.head.read();
        let frozen = self.frozen.read().clone();
        let ids = self.matching_ids(&head, frozen.as_deref(), matcher_sets, mint, maxt);
        let mut names: Vec<String> = head
            .postings
            .names()
            .filter(|name| {
                head.postings
                    .values(name)
                    .any(|(_, postings)| !postings.is_disjoint(&ids))
            })
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// Values of one label among matching series with data in range, sorted.
    pub fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let head = self.head.read();
        let frozen = self.frozen.read().clone();
        let ids = self.matching_ids(&head, frozen.as_deref(), matcher_sets, mint, maxt);
        let mut values: Vec<String> = head
            .postings
            .values(name)
            .filter(|(_, postings)| !postings.is_disjoint(&ids))
            .map(|(value, _)| value.to_owned())
            .collect();
        values.sort();
        values
    }

    /// Samples of every series matching `matchers` within `[mint, maxt]`, in
    /// series-id order; series without samples in range are omitted.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let mut out = Vec::new();
        self.for_each_selected(matchers, mint, maxt, |series| {
            out.push(series);
            true
        });
        out
    }

    /// [`MetricsStore::select`] one series at a time, without holding them
    /// all (SQL scans): `visit` returns false to stop.
    pub fn for_each_selected(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        mut visit: impl FnMut(SeriesSamples) -> bool,
    ) {
        let (snapshots, frozen) = {
            let head = self.head.read();
            let frozen = self.frozen.read().clone();
            let ids = matcher::select(&head.postings, matchers);
            let snapshots: Vec<(u32, Arc<Labels>, HeadSeries)> = ids
                .iter()
                .map(|id| {
                    let entry = &head.series[id as usize];
                    (id, entry.labels.clone(), entry.head.snapshot(mint, maxt))
                })
                .collect();
            (snapshots, frozen)
        };
        let blocks: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect();
        let mut scratch = Vec::new();
        for (id, labels, head_part) in snapshots {
            let mut samples = Vec::new();
            for block in &blocks {
                scratch.clear();
                block.samples(id, mint, maxt, &mut scratch);
                if !scratch.is_empty() {
                    samples = merge_sorted(samples, std::mem::take(&mut scratch));
                }
            }
            if let Some(frozen) = &frozen {
                if let Ok(pos) = frozen.series.binary_search_by_key(&id, |(i, _)| *i) {
                    let mut part = Vec::new();
                    frozen.series[pos].1.samples(mint, maxt, &mut part);
                    samples = merge_sorted(samples, part);
                }
            }
            let mut part = Vec::new();
            head_part.samples(mint, maxt, &mut part);
            samples = merge_sorted(samples, part);
            if !samples.is_empty() && !visit(SeriesSamples { labels, samples }) {
                return;
            }
        }
    }

    /// Metadata by metric family.
    pub fn metadata(&self) -> Vec<MetricMetadata> {
        let mut out: Vec<MetricMetadata> = self.metadata.read().values().cloned().collect();
        out.sort_by(|a, b| a.metric_family.cmp(&b.metric_family));
        out
    }

    /// Exemplars of series matching `matchers` within `[mint, maxt]`.
    pub fn exemplars(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Arc<Labels>, Vec<Exemplar>)> {
        let head = self.head.read();
        let ids = matcher::select(&head.postings, matchers);
        let ring = self.exemplars.lock();
        let mut by_series: HashMap<u32, Vec<Exemplar>> = HashMap::new();
        for (id, exemplar) in &ring.items {
            if ids.contains(*id) && exemplar.t >= mint && exemplar.t <= maxt {
                by_series.entry(*id).or_default().push(exemplar.clone());
            }
        }
        let mut out: Vec<(Arc<Labels>, Vec<Exemplar>)> = by_series
            .into_iter()
            .map(|(id, items)| (head.series[id as usize].labels.clone(), items))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Cardinality figures for `/api/v1/status/tsdb`: the `limit` largest
    /// entries of each list, plus head statistics.
    pub fn index_stats(&self, limit: usize) -> IndexStats {
        let head = self.head.read();
        let postings = &head.postings;
        let top = |mut items: Vec<(String, u64)>| {
            items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            items.truncate(limit);
            items
        };
        let by_metric = top(postings
            .values(crate::model::METRIC_NAME)
            .map(|(v, p)| (v.to_owned(), p.len()))
            .collect());
        let mut value_counts = Vec::new();
        let mut memory = Vec::new();
        let mut pairs = Vec::new();
        for name in postings.names() {
            let mut count = 0u64;
            let mut bytes = 0u64;
            for (value, list) in postings.values(name) {
                count += 1;
                bytes += value.len() as u64 * list.len();
                pairs.push((format!("{name}={value}"), list.len()));
            }
            value_counts.push((name.to_owned(), count));
            memory.push((name.to_owned(), bytes));
        }
        let mut stats = IndexStats {
            num_series: postings.all().len(),
            num_label_pairs: pairs.len() as u64,
            chunk_count: 0,
            min_time: None,
            max_time: None,
            series_count_by_metric_name: by_metric,
            label_value_count_by_label_name: top(value_counts),
            memory_in_bytes_by_label_name: top(memory),
            series_count_by_label_value_pair: top(pairs),
        };
        for entry in &head.series {
            stats.chunk_count +=
                entry.head.closed.len() as u64 + u64::from(entry.head.open.is_some());
        }
        if head.max_t >= head.min_t {
            stats.min_time = Some(head.min_t);
            stats.max_time = Some(head.max_t);
        }
        stats
    }

    pub fn summary(&self) -> StoreSummary {
        let head = self.head.read();
        let mut summary = StoreSummary {
            series: head.postings.all().len(),
            ..Default::default()
        };
        for entry in &head.series {
            if !entry.head.is_empty() {
                summary.head_series += 1;
                summary.head_samples += entry.head.sample_count();
            }
        }
        if head.max_t >= head.min_t {
            summary.head_min_t = Some(head.min_t);
            summary.head_max_t = Some(head.max_t);
        }
        drop(head);
        for block in self.blocks.read().iter() {
            summary.blocks += 1;
            summary.block_bytes += block.disk_bytes;
            summary.block_samples += block.meta.num_samples;
        }
        summary.wal_bytes = self.wal.disk_bytes();
        summary.index_bytes = self.index.disk_bytes();
        summary
    }
}

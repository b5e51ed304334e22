//! The metrics store: series index, in-memory head, immutable blocks, WAL.
//!
//! Writes: [`MetricsStore::append`] validates each sample against its
//! series, applies it to the head and logs it to the WAL under one lock, then
//! waits for the WAL fsync before returning. Reads take a snapshot of the head
//! under a read lock and decode outside it.
//!
//! Cuts: when the head spans `block_duration` (or on `flush`), the WAL is
//! rotated and the head is swapped out under the write lock, written as one
//! block per aligned time window, and only then are the old WAL segments
//! deleted. Until the block is loaded, queries read the swapped-out head
//! ("frozen"), so data never disappears from view.

pub mod block;
pub mod block_chunk;
pub mod chunk;
pub mod compact;
pub mod head;
pub mod index;
pub mod late;
mod maintenance;
pub mod matcher;
mod read;
pub mod wal_record;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use self::block::Block;
use self::head::HeadSeries;
use self::index::{MemPostings, SledIndex};
use self::wal_record::{Record, RecordBuilder};
use crate::config::{Config, FsyncPolicy};
use crate::model::{Exemplar, LabelRef, Labels, MetricMetadata, Sample};
use crate::storage::wal::{self, Wal, WalStats};

/// Errors from the metrics store that are the server's fault (HTTP 5xx).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("wal: {0}")]
    Wal(#[from] std::io::Error),
    #[error("index: {0}")]
    Index(#[from] sled::Error),
    #[error(transparent)]
    Block(#[from] block::BlockError),
}

/// Why a sample or series was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    OutOfOrder,
    Duplicate,
    SeriesLimit,
    TooOld,
    TooFarInFuture,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::Duplicate => "duplicate_timestamp",
            RejectReason::SeriesLimit => "series_limit",
            RejectReason::TooOld => "too_old",
            RejectReason::TooFarInFuture => "too_far_in_future",
        }
    }
}

/// One series' part of a write. Labels are sorted and validated by ingest;
/// `key` is their canonical key ([`Labels::key`]) and `hash` its xxh3.
#[derive(Debug, Clone, Copy)]
pub struct SeriesWrite<'a> {
    pub hash: u64,
    pub key: &'a [u8],
    pub labels: &'a [LabelRef<'a>],
    pub samples: &'a [Sample],
    pub exemplars: &'a [Exemplar],
}

/// The first rejections of an append are described in full; the rest counted.
const MAX_REJECTION_MESSAGES: usize = 10;

/// Prometheus' `ExemplarMaxLabelSetLength`: names and values of an
/// exemplar's labels together, in characters.
pub const EXEMPLAR_MAX_LABEL_RUNES: usize = 128;

#[derive(Debug, Default)]
pub struct AppendOutcome {
    pub samples_accepted: u64,
    pub series_created: u64,
    pub exemplars_accepted: u64,
    /// Exemplars over [`EXEMPLAR_MAX_LABEL_RUNES`] (their samples are kept).
    pub exemplars_dropped: u64,
    pub rejected: HashMap<RejectReason, u64>,
    pub messages: Vec<String>,
}

impl AppendOutcome {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn reject(&mut self, reason: RejectReason, message: impl FnOnce() -> String) {
        *self.rejected.entry(reason).or_default() += 1;
        if self.messages.len() < MAX_REJECTION_MESSAGES {
            self.messages.push(message());
        }
    }
}

/// A series and its samples in a queried range.
#[derive(Debug, Clone)]
pub struct SeriesSamples {
    pub labels: Arc<Labels>,
    pub samples: Vec<Sample>,
}

/// Store settings taken from [`Config`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub block_duration_ms: i64,
    pub out_of_order_window_ms: i64,
    pub retention_ms: i64,
    pub max_active_series: usize,
    pub max_exemplars: usize,
    pub wal_segment_size: u64,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// Samples are accepted within `[now − retention, now + ahead_ms]` when
    /// set (the server); `None` accepts any time (tests, benchmarks, tools).
    pub accept_ahead_ms: Option<i64>,
    /// Readers of the WAL besides replay (the forwarders' names).
    pub wal_readers: Vec<String>,
}

impl StoreOptions {
    /// The embedded default configuration's settings, storing in `dir`.
    pub fn new(dir: &Path) -> StoreOptions {
        StoreOptions {
            dir: dir.to_owned(),
            accept_ahead_ms: None,
            ..StoreOptions::from_config(&Config::default_config())
        }
    }

    pub fn from_config(config: &Config) -> StoreOptions {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        StoreOptions {
            dir: config.storage.data_dir.join("metrics"),
            block_duration_ms: ms(config.storage.block_duration),
            out_of_order_window_ms: ms(config.storage.out_of_order_window),
            retention_ms: ms(config.storage.retention),
            max_active_series: config.limits.max_active_series,
            max_exemplars: config.limits.max_exemplars,
            wal_segment_size: config.wal.segment_size.0,
            fsync: config.wal.fsync,
            fsync_interval: config.wal.fsync_interval,
            accept_ahead_ms: Some(ms(config.limits.creation_grace_period)),
            wal_readers: crate::forward::wal_readers(config, crate::forward::Signal::Metrics),
        }
    }
}

/// Counters for the self-metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub samples_appended: AtomicU64,
    pub series_created: AtomicU64,
    pub exemplars_appended: AtomicU64,
    pub out_of_order_accepted: AtomicU64,
    pub rejected_out_of_order: AtomicU64,
    pub rejected_duplicate: AtomicU64,
    pub rejected_series_limit: AtomicU64,
    pub rejected_time_bounds: AtomicU64,
    pub blocks_written: AtomicU64,
    pub blocks_deleted: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_failures: AtomicU64,
    /// Wall-clock and CPU time spent compacting, in microseconds.
    pub compaction_micros: AtomicU64,
    pub compaction_cpu_micros: AtomicU64,
    /// Bytes of blocks written by compactions.
    pub compaction_bytes: AtomicU64,
}

/// A point-in-time summary for `/metrics` and the status API.
#[derive(Debug, Clone, Default)]
pub struct StoreSummary {
    pub series: u64,
    pub head_series: u64,
    pub head_samples: u64,
    pub head_min_t: Option<i64>,
    pub head_max_t: Option<i64>,
    pub blocks: u64,
    pub block_bytes: u64,
    pub block_samples: u64,
    pub wal_bytes: u64,
    pub index_bytes: u64,
}

/// Cardinality statistics of the index (see [`MetricsStore::index_stats`]).
#[derive(Debug, Clone, Default)]
pub struct IndexStats {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

/// Hash maps keyed by label hashes: the key is already a good hash.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type HashIndex = HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>;

struct SeriesEntry {
    labels: Arc<Labels>,
    /// Canonical key bytes: one comparison finds the series on append.
    key: Box<[u8]>,
    /// Newest in-order timestamp (survives cuts, so ordering is kept).
    last_t: i64,
    last_v_bits: u64,
    head: HeadSeries,
}

struct HeadState {
    by_hash: HashIndex,
    /// Series whose label hash collides with another's (vanishingly rare).
    collisions: HashMap<u64, Vec<u32>>,
    series: Vec<SeriesEntry>,
    postings: MemPostings,
    /// Newest timestamp in the head; the out-of-order window counts back from it.
    max_t: i64,
    min_t: i64,
    records: RecordBuilder,
}

impl HeadState {
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let id = *self.by_hash.get(&hash)?;
        if *self.series[id as usize].key == *key {
            return Some(id);
        }
        self.collisions
            .get(&hash)?
            .iter()
            .copied()
            .find(|&id| *self.series[id as usize].key == *key)
    }

    /// Register a series under `id` (ids are dense; gaps get placeholders).
    fn insert(&mut self, id: u32, labels: Labels) {
        let hash = labels.hash();
        let index = id as usize;
        while self.series.len() < index {
            self.series.push(SeriesEntry::placeholder());
        }
        self.postings.add(id, &labels);
        let entry = SeriesEntry {
            key: labels.key().into_boxed_slice(),
            labels: Arc::new(labels),
            last_t: i64::MIN,
            last_v_bits: 0,
            head: HeadSeries::default(),
        };
        if index == self.series.len() {
            self.series.push(entry);
        } else {
            self.series[index] = entry;
        }
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(hash).or_default().push(id);
            }
        }
    }

    /// Drop a series from the hash index and free its entry (the id stays
    /// taken: blocks and the WAL may still name it).
    fn forget(&mut self, id: u32, labels: &Labels) {
        let hash = labels.hash();
        if self.by_hash.get(&hash) == Some(&id) {
            self.by_hash.remove(&hash);
            // A colliding series with the same hash takes the slot.
            if let Some(others) = self.collisions.get_mut(&hash) {
                if let Some(next) = others.pop() {
                    self.by_hash.insert(hash, next);
                }
                if others.is_empty() {
                    self.collisions.remove(&hash);
                }
            }
        } else if let Some(others) = self.collisions.get_mut(&hash) {
            others.retain(|&other| other != id);
            if others.is_empty() {
                self.collisions.remove(&hash);
            }
        }
        self.series[id as usize] = SeriesEntry::placeholder();
    }

    /// Apply an already-accepted sample (WAL replay): in order if newer than
    /// the series' last sample, else into the out-of-order buffer.
    fn replay_sample(&mut self, id: u32, sample: Sample) {
        let Some(entry) = self.series.get_mut(id as usize) else {
            return;
        };
        if sample.t > entry.last_t {
            entry.head.append_in_order(sample.t, sample.v);
            entry.last_t = sample.t;
            entry.last_v_bits = sample.v.to_bits();
        } else if sample.t < entry.last_t {
            entry.head.out_of_order.push(sample);
        }
        self.max_t = self.max_t.max(sample.t);
        self.min_t = self.min_t.min(sample.t);
    }
}

impl SeriesEntry {
    fn placeholder() -> SeriesEntry {
        SeriesEntry {
            key: Box::default(),
            labels: Arc::new(Labels::default()),
            last_t: i64::MIN,
            last_v_bits: 0,
            head: HeadSeries::default(),
        }
    }
}

/// The head taken out by a cut, readable until its blocks are loaded.
struct Frozen {
    series: Vec<(u32, HeadSeries)>,
    /// First WAL segment written after the swap: the segments before it
    /// hold this data until its blocks are published.
    checkpoint: u64,
    /// Series count at the swap (postings to checkpoint with it).
    postings_upto: u32,
}

/// Exemplars in arrival order, oldest dropped first.
struct ExemplarRing {
    items: VecDeque<(u32, Exemplar)>,
    capacity: usize,
}

pub struct MetricsStore {
    options: StoreOptions,
    wal: Arc<Wal>,
    index: SledIndex,
    head: RwLock<HeadState>,
    frozen: RwLock<Option<Arc<Frozen>>>,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// One cut or retention pass at a time.
    maintenance: Mutex<()>,
    exemplars: Mutex<ExemplarRing>,
    metadata: RwLock<HashMap<String, MetricMetadata>>,
    pub stats: StoreStats,
    /// Writes of samples older than the results cache's freshness bound.
    pub late: late::LateWrites,
}

/// What a cut did, for logs and the flush API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CutReport {
    pub blocks: Vec<String>,
    pub series: u64,
    pub samples: u64,
}

impl MetricsStore {
    /// Why this store's WAL stopped accepting writes, if it did (a failed
    /// write or fsync; see `storage::wal`).
    pub fn wal_failure(&self) -> Option<String> {
        self.wal.failure()
    }

    pub fn open(options: StoreOptions) -> Result<Arc<MetricsStore>, StorageError> {
        std::fs::create_dir_all(&options.dir)?;
        let index = SledIndex::open(&options.dir.join("index"))?;
        let loaded = index.load()?;
        let blocks = block::open_all(&options.dir.join("blocks"))?;
        let mut state = HeadState {
            by_hash: HashIndex::default(),
            collisions: HashMap::new(),
            series: Vec::with_capacity(loaded.series.len()),
            postings: MemPostings::default(),
            max_t: i64::MIN,
            min_t: i64::MAX,
            records: RecordBuilder::default(),
        };
        for (id, labels) in loaded.series.into_iter().enumerate() {
            if let Some(labels) = labels {
                let hash = labels.hash();
                state.by_hash.entry(hash).or_insert(id as u32);
                state.series.push(SeriesEntry {
                    key: labels.key().into_boxed_slice(),
                    labels: Arc::new(labels),
                    last_t: i64::MIN,
                    last_v_bits: 0,
                    head: HeadSeries::default(),
                });
            } else {
                state.series.push(SeriesEntry::placeholder());
            }
        }
        state.postings = loaded.postings;
        for block in &blocks {
            for id in &block.series {
                if let (Some(entry), Some((_, max_t))) =
                    (state.series.get_mut(id as usize), block.series_range(id))
                {
                    entry.last_t = entry.last_t.max(max_t);
                }
            }
        }
        let metadata = loaded
            .metadata
            .into_iter()
            .map(|m| (m.metric_family.clone(), m))
            .collect();
        let mut exemplars = ExemplarRing {
            items: VecDeque::new(),
            capacity: options.max_exemplars,
        };
        let first_segment = blocks
            .iter()
            .map(|b| b.meta.wal_checkpoint)
            .max()
            .unwrap_or(0);
        let mut replayed_series = Vec::new();
        let (wal, report) = Wal::open_with_readers(
            &options.dir.join("wal"),
            options.wal_segment_size,
            first_segment,
            &options.wal_readers,
            |payload| match wal_record::decode(payload) {
                Some(Record::Series(series)) => {
                    for (id, labels) in series {
                        let known = state
                            .series
                            .get(id as usize)
                            .is_some_and(|e| !e.labels.is_empty());
                        if !known {
                            replayed_series.push((id, labels.clone()));
                            state.insert(id, labels);
                        }
                    }
                }
                Some(Record::Samples(samples)) => {
                    for (id, sample) in samples {
                        state.replay_sample(id, sample);
                    }
                }
                Some(Record::Exemplars(items)) => {
                    for item in items {
                        exemplars.push(item);
                    }
                }
                Some(Record::Metadata(_)) => {}
                None => tracing::warn!("skipping undecodable wal record"),
            },
        )?;
        for (id, labels) in &replayed_series {
            index.insert_series(*id, labels)?;
        }
        tracing::info!(
            series = state.series.len(),
            blocks = blocks.len(),
            wal_segments = report.segments,
            wal_records = report.records,
            wal_repairs = report.repairs.len(),
            "metrics store opened"
        );
        let wal = Arc::new(wal);
        if options.fsync == FsyncPolicy::Interval {
            wal::spawn_interval_sync(Arc::downgrade(&wal), options.fsync_interval);
        }
        Ok(Arc::new(MetricsStore {
            options,
            wal,
            index,
            head: RwLock::new(state),
            frozen: RwLock::new(None),
            blocks: RwLock::new(blocks.into_iter().map(Arc::new).collect()),
            maintenance: Mutex::new(()),
            exemplars: Mutex::new(exemplars),
            metadata: RwLock::new(metadata),
            stats: StoreStats::default(),
            late: late::LateWrites::default(),
        }))
    }

    /// The WAL reader registered as `name` (see `StoreOptions::wal_readers`).
    pub fn wal_reader(&self, name: &str) -> Option<wal::WalReader> {
        self.wal.reader(name)
    }

    /// The labels of series `id`, while the store knows it.
    pub fn series_labels(&self, id: u32) -> Option<Arc<Labels>> {
        let head = self.head.read();
        let entry = head.series.get(id as usize)?;
        (!entry.labels.is_empty()).then(|| entry.labels.clone())
    }

    pub fn wal_stats(&self) -> Arc<WalStats> {
        self.wal.stats.clone()
    }

    /// Store a batch: every valid sample is kept, every invalid one is
    /// counted and described in the outcome. Returns once the accepted data
    /// is durable (per the fsync policy).
    pub fn append(
        &self,
        writes: &[SeriesWrite<'_>],
        metadata: &[MetricMetadata],
    ) -> Result<AppendOutcome, StorageError> {
        let (outcome, seq) = self.append_unsynced(writes, metadata)?;
        self.sync_to(seq)?;
        Ok(outcome)
    }

    /// Make appends up to WAL sequence `seq` durable (per the fsync policy).
    pub fn sync_to(&self, seq: u64) -> Result<(), StorageError> {
        if seq > 0 && self.options.fsync == FsyncPolicy::Always {
            self.wal.sync(seq)?;
        }
        Ok(())
    }

    /// [`MetricsStore::append`] without waiting for the fsync: the data is
    /// readable at once, durable after [`MetricsStore::sync_to`] with the
    /// returned sequence. For writers that append many small batches and
    /// acknowledge once (rule groups).
    pub fn append_unsynced(
        &self,
        writes: &[SeriesWrite<'_>],
        metadata: &[MetricMetadata],
    ) -> Result<(AppendOutcome, u64), StorageError> {
        let mut outcome = AppendOutcome::default();
        let (oldest, newest) = match self.options.accept_ahead_ms {
            Some(ahead) => {
                let now = crate::now_ms();
                (
                    now.saturating_sub(self.options.retention_ms),
                    now.saturating_add(ahead),
                )
            }
            None => (i64::MIN, i64::MAX),
        };
        let mut new_series: Vec<(u32, Arc<Labels>)> = Vec::new();
        let mut new_exemplars: Vec<(u32, Exemplar)> = Vec::new();
        let mut last_seq = 0;
        // The oldest accepted sample, for the late-write log: noted however
        // this ends, as the samples are readable once in the head.
        let mut oldest_accepted = late::NoteOnDrop::new(&self.late);
        {
            let mut head = self.head.write();
            let state = &mut *head;
            state.records.clear();
            for write in writes {
                let id = match state.find(write.hash, write.key) {
                    Some(id) => id,
                    None => {
                        // Series whose data retention removed are gone from
                        // the postings: they do not count.
                        let live = state.postings.all().len() as usize;
                        if self.options.max_active_series > 0
                            && live >= self.options.max_active_series
                        {
                            outcome.reject(RejectReason::SeriesLimit, || {
                                format!(
                                    "series {} rejected: the limit of {} series is reached (limits.max_active_series)",
                                    Labels::from_refs(write.labels),
                                    self.options.max_active_series
                                )
                            });
                            // The samples of a rejected series count as rejected too.
                            *outcome
                                .rejected
                                .get_mut(&RejectReason::SeriesLimit)
                                .unwrap() += write.samples.len().saturating_sub(1) as u64;
                            continue;
                        }
                        let id = u32::try_from(state.series.len()).expect("fewer than 2^32 series");
                        let labels = Labels::from_refs(write.labels);
                        state.records.add_series(id, &labels);
                        state.insert(id, labels);
                        new_series.push((id, state.series[id as usize].labels.clone()));
                        outcome.series_created += 1;
                        id
                    }
                };
                let mut max_t = state.max_t;
                let mut min_t = state.min_t;
                let entry = &mut state.series[id as usize];
                for sample in write.samples {
                    let (t, v) = (sample.t, sample.v);
                    if t < oldest || t > newest {
                        let (reason, what) = if t < oldest {
                            (RejectReason::TooOld, "older than storage.retention")
                        } else {
                            (
                                RejectReason::TooFarInFuture,
                                "too far in the future (limits.creation_grace_period)",
                            )
                        };
                        outcome.reject(reason, || {
                            format!(
                                "sample at timestamp {t} for series {} is {what}",
                                entry.labels
                            )
                        });
                        continue;
                    }
                    if t > entry.last_t {
                        entry.head.append_in_order(t, v);
                        entry.last_t = t;
                        entry.last_v_bits = v.to_bits();
                    } else if t == entry.last_t {
                        if v.to_bits() != entry.last_v_bits {
                            outcome.reject(RejectReason::Duplicate, || {
                                format!(
                                    "duplicate sample for timestamp {t} with a different value for series {}",
                                    entry.labels
                                )
                            });
                        }
                        // An identical resend is accepted silently (as Prometheus does).
                        continue;
                    } else if t >= max_t.saturating_sub(self.options.out_of_order_window_ms) {
                        entry.head.out_of_order.push(*sample);
                        self.stats
                            .out_of_order_accepted
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        outcome.reject(RejectReason::OutOfOrder, || {
                            format!(
                                "out of order sample at timestamp {t} for series {} (newest is {}, window {}ms)",
                                entry.labels, entry.last_t, self.options.out_of_order_window_ms
                            )
                        });
                        continue;
                    }
                    state.records.add_sample(id, t, v);
                    outcome.samples_accepted += 1;
                    oldest_accepted.saw(t);
                    max_t = max_t.max(t);
                    min_t = min_t.min(t);
                }
                for exemplar in write.exemplars {
                    // Prometheus' limit on an exemplar's labels (names and
                    // values together, in characters); such exemplars are
                    // dropped, their samples kept.
                    let length: usize = exemplar
                        .labels
                        .iter()
                        .map(|l| l.name.chars().count() + l.value.chars().count())
                        .sum();
                    if length > EXEMPLAR_MAX_LABEL_RUNES {
                        outcome.exemplars_dropped += 1;
                        if outcome.messages.len() < MAX_REJECTION_MESSAGES {
                            outcome.messages.push(format!(
                                "exemplar of {} dropped: its labels are {length} characters, more than {EXEMPLAR_MAX_LABEL_RUNES}",
                                entry.labels
                            ));
                        }
                        continue;
                    }
                    state.records.add_exemplar(id, exemplar);
                    new_exemplars.push((id, exemplar.clone()));
                }
                state.max_t = max_t;
                state.min_t = min_t;
            }
            for record in state.records.records() {
                last_seq = self.wal.append(record)?;
            }
        }
        outcome.exemplars_accepted = new_exemplars.len() as u64;
        if !new_exemplars.is_empty() {
            let mut ring = self.exemplars.lock();
            for item in new_exemplars {
                ring.push(item);
            }
        }
        for (id, labels) in &new_series {
            // The WAL holds the series too; a failed insert is repaired on replay.
            if let Err(err) = self.index.insert_series(*id, labels) {
                tracing::error!(error = %err, series = id, "series index insert failed");
            }
        }
        for m in metadata {
            let changed = self.metadata.read().get(&m.metric_family) != Some(m);
            if changed {
                last_seq = self.wal.append(&wal_record::encode_metadata_record(m))?;
                self.index.insert_metadata(m)?;
                self.metadata
                    .write()
                    .insert(m.metric_family.clone(), m.clone());
            }
        }
        self.stats
            .samples_appended
            .fetch_add(outcome.samples_accepted, Ordering::Relaxed);
        self.stats
            .series_created
            .fetch_add(outcome.series_created, Ordering::Relaxed);
        self.stats
            .exemplars_appended
            .fetch_add(outcome.exemplars_accepted, Ordering::Relaxed);
        for (reason, count) in &outcome.rejected {
            let counter = match reason {
                RejectReason::OutOfOrder => &self.stats.rejected_out_of_order,
                RejectReason::Duplicate => &self.stats.rejected_duplicate,
                RejectReason::SeriesLimit => &self.stats.rejected_series_limit,
                RejectReason::TooOld | RejectReason::TooFarInFuture => {
                    &self.stats.rejected_time_bounds
                }
            };
            counter.fetch_add(*count, Ordering::Relaxed);
        }
        Ok((outcome, last_seq))
    }

    /// Make everything durable before shutdown.
    pub fn close(&self) -> Result<(), StorageError> {
        self.wal.sync_all()?;
        let head = self.head.read();
        self.index
            .checkpoint_postings(&head.postings, head.series.len() as u32)?;
        Ok(())
    }
}

impl ExemplarRing {
    fn push(&mut self, item: (u32, Exemplar)) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() >= self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }
}

#[cfg(test)]
mod tests;

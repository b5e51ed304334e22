//! The trace store: spans in an in-memory head, then in immutable,
//! time-ordered span blocks; a WAL in front; a catalogue of services and
//! operations.
//!
//! Writes: [`TraceStore::append`] logs spans to the WAL and adds them to the
//! head under one lock, then waits for the fsync. A trace is assembled from
//! the head and every block holding its id (each block keeps its sorted
//! trace-id column in memory), so spans of one trace that arrive minutes
//! apart, in different blocks, still form one trace.
//!
//! Cuts: when the head holds `max_head_spans` spans or its oldest span
//! arrived `block_age` ago, the WAL is rotated and the head swapped out
//! under the write lock, written as a block, and only then are the old WAL
//! segments deleted; until the block is loaded, reads see the swapped-out
//! head. Retention drops blocks whose newest span ended before the horizon.
//!
//! On disk: `DATA/traces/{wal/, blocks/<name>/, catalog.json}`.

pub mod block;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use self::block::{BlockError, SpanBlock};
use crate::config::{Config, FsyncPolicy};
use crate::model::span::{codec, Span, SpanId, TraceId};
use crate::now_ms;
use crate::storage::codec::{put_uvarint, Reader};
use crate::storage::wal::{self, Wal};

#[derive(Debug, thiserror::Error)]
pub enum TraceStoreError {
    #[error("wal: {0}")]
    Io(#[from] std::io::Error),
    #[error("block: {0}")]
    Block(#[from] BlockError),
}

#[derive(Debug, Clone)]
pub struct TraceStoreOptions {
    pub dir: PathBuf,
    pub retention_ms: i64,
    pub max_head_spans: usize,
    pub block_age_ms: i64,
    pub wal_segment_size: u64,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// Readers of the WAL besides replay (forwarders).
    pub wal_readers: Vec<String>,
}

impl TraceStoreOptions {
    pub fn new(dir: &std::path::Path) -> Self {
        TraceStoreOptions {
            dir: dir.to_owned(),
            ..TraceStoreOptions::from_config(&Config::default_config())
        }
    }

    pub fn from_config(config: &Config) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        TraceStoreOptions {
            dir: config.storage.data_dir.join("traces"),
            retention_ms: ms(config.traces.retention),
            max_head_spans: config.traces.max_head_spans,
            block_age_ms: ms(config.traces.block_age),
            wal_segment_size: config.wal.segment_size.0,
            fsync: config.wal.fsync,
            fsync_interval: config.wal.fsync_interval,
            wal_readers: crate::forward::wal_readers(config, crate::forward::Signal::Traces),
        }
    }
}

/// Services and their operations (name, span kind).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub services: BTreeMap<String, BTreeSet<(String, u8)>>,
    #[serde(skip)]
    dirty: bool,
}

/// Services the catalogue lists at most, and operations per service: span
/// names with ids or raw URLs in them would otherwise grow it without bound.
/// Spans beyond these are stored and searchable as usual, only not listed.
const MAX_SERVICES: usize = 10_000;
const MAX_OPERATIONS_PER_SERVICE: usize = 2_000;

impl Catalog {
    fn add(&mut self, span: &Span) {
        if !self.services.contains_key(&span.service) {
            if self.services.len() >= MAX_SERVICES {
                return;
            }
            self.services.insert(span.service.clone(), BTreeSet::new());
        }
        let ops = self.services.get_mut(&span.service).expect("present");
        let operation = (span.name.clone(), span.kind);
        if ops.len() < MAX_OPERATIONS_PER_SERVICE && !ops.contains(&operation) {
            ops.insert(operation);
            self.dirty = true;
        }
    }
}

#[derive(Default)]
struct Head {
    spans: Vec<Span>,
    by_trace: HashMap<TraceId, Vec<u32>>,
    min_start_ns: i64,
    max_end_ns: i64,
    first_arrival_ms: i64,
}

impl Head {
    fn push(&mut self, span: Span, now_ms: i64) {
        if self.spans.is_empty() {
            self.min_start_ns = i64::MAX;
            self.max_end_ns = i64::MIN;
            self.first_arrival_ms = now_ms;
        }
        self.min_start_ns = self.min_start_ns.min(span.start_ns);
        self.max_end_ns = self.max_end_ns.max(span.end_ns);
        self.by_trace
            .entry(span.trace_id)
            .or_default()
            .push(self.spans.len() as u32);
        self.spans.push(span);
    }
}

/// What a trace search asks for (Jaeger's parameters).
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub span_kind: Option<u8>,
    pub tags: Vec<(String, String)>,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub limit: usize,
}

impl TraceQuery {
    fn matches_columns(&self, service: &str, name: &str, kind: u8, start: i64, end: i64) -> bool {
        let duration = end - start;
        start >= self.start_ns
            && start <= self.end_ns
            && self.service.as_deref().is_none_or(|s| s == service)
            && self.operation.as_deref().is_none_or(|o| o == name)
            && self.span_kind.is_none_or(|k| k == kind)
            && self.min_duration_ns.is_none_or(|d| duration >= d)
            && self.max_duration_ns.is_none_or(|d| duration <= d)
    }

    fn matches_tags(&self, span: &Span) -> bool {
        self.tags.iter().all(|(k, v)| span.has_tag(k, v))
    }
}

/// One service-to-service edge, with the outcome of the calls (the child
/// spans): how many failed and how long they took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
    pub error_count: u64,
    pub p50_ns: i64,
    pub p95_ns: i64,
}

pub struct TraceStore {
    pub options: TraceStoreOptions,
    wal: Arc<Wal>,
    head: RwLock<Head>,
    frozen: RwLock<Option<Arc<Head>>>,
    /// First WAL segment after the frozen head (its data is in the ones
    /// before, until its block is published).
    frozen_checkpoint: Mutex<Option<u64>>,
    blocks: RwLock<Vec<Arc<SpanBlock>>>,
    catalog: RwLock<Catalog>,
    cut_lock: Mutex<()>,
    /// A background cut is running (see [`TraceStore::cut_if_full`]).
    cutting: std::sync::atomic::AtomicBool,
    /// Spans older than the results cache's freshness bound, written.
    pub late: crate::storage::metrics::late::LateWrites,
}

const RECORD_SPANS: u8 = 1;

/// The spans of one WAL record (for forwarders reading the WAL); `None`
/// for a record that is not a span batch or does not decode.
pub fn decode_wal_spans(payload: &[u8]) -> Option<Vec<Span>> {
    let mut r = Reader::new(payload);
    if r.u8()? != RECORD_SPANS {
        return None;
    }
    let n = r.uvarint()?;
    let mut spans = Vec::with_capacity(usize::try_from(n).ok()?.min(1 << 16));
    for _ in 0..n {
        spans.push(codec::get_span(&mut r)?);
    }
    Some(spans)
}

impl TraceStore {
    /// Why this store's WAL stopped accepting writes, if it did (a failed
    /// write or fsync; see `storage::wal`).
    pub fn wal_failure(&self) -> Option<String> {
        self.wal.failure()
    }

    pub fn open(options: TraceStoreOptions) -> Result<Arc<TraceStore>, TraceStoreError> {
        std::fs::create_dir_all(&options.dir)?;
        let blocks = block::open_all(&options.dir.join("blocks"))?;
        let catalog_path = options.dir.join("catalog.json");
        let mut catalog: Catalog = match std::fs::read(&catalog_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Catalog::default(),
        };
        let first_segment = blocks
            .iter()
            .map(|b| b.meta.wal_checkpoint)
            .max()
            .unwrap_or(0);
        let mut head = Head::default();
        let now = now_ms();
        let (wal, report) = Wal::open_with_readers(
            &options.dir.join("wal"),
            options.wal_segment_size,
            first_segment,
            &options.wal_readers,
            |payload| {
                let mut r = Reader::new(payload);
                if r.u8() != Some(RECORD_SPANS) {
                    tracing::warn!("skipping undecodable trace wal record");
                    return;
                }
                let Some(n) = r.uvarint() else { return };
                for _ in 0..n {
                    match codec::get_span(&mut r) {
                        Some(span) => {
                            catalog.add(&span);
                            head.push(span, now);
                        }
                        None => {
                            tracing::warn!("skipping the rest of an undecodable trace wal record");
                            break;
                        }
                    }
                }
            },
        )?;
        tracing::info!(
            blocks = blocks.len(),
            head_spans = head.spans.len(),
            wal_segments = report.segments,
            wal_repairs = report.repairs.len(),
            "trace store opened"
        );
        let wal = Arc::new(wal);
        if options.fsync == FsyncPolicy::Interval {
            wal::spawn_interval_sync(Arc::downgrade(&wal), options.fsync_interval);
        }
        Ok(Arc::new(TraceStore {
            options,
            wal,
            head: RwLock::new(head),
            frozen: RwLock::new(None),
            frozen_checkpoint: Mutex::new(None),
            blocks: RwLock::new(blocks.into_iter().map(Arc::new).collect()),
            catalog: RwLock::new(catalog),
            cut_lock: Mutex::new(()),
            cutting: std::sync::atomic::AtomicBool::new(false),
            late: Default::default(),
        }))
    }

    /// Store spans; durable when this returns.
    /// The WAL reader registered as `name` (see `TraceStoreOptions::wal_readers`).
    pub fn wal_reader(&self, name: &str) -> Option<crate::storage::wal::WalReader> {
        self.wal.reader(name)
    }

    pub fn append(&self, spans: Vec<Span>, now_ms: i64) -> Result<(), TraceStoreError> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut record = Vec::with_capacity(spans.len() * 256);
        record.push(RECORD_SPANS);
        put_uvarint(&mut record, spans.len() as u64);
        for span in &spans {
            codec::put_span(&mut record, span);
        }
        {
            let mut catalog = self.catalog.write();
            for span in &spans {
                catalog.add(span);
            }
        }
        let oldest_ms = spans
            .iter()
            .map(|s| s.start_ns.div_euclid(1_000_000))
            .min()
            .unwrap_or(i64::MAX);
        let seq = {
            let mut head = self.head.write();
            let seq = self.wal.append(&record)?;
            for span in spans {
                head.push(span, now_ms);
            }
            seq
        };
        // Searchable now: a search computed before may have missed them.
        self.late.note(oldest_ms, crate::now_ns());
        if self.options.fsync == FsyncPolicy::Always {
            self.wal.sync(seq)?;
        }
        Ok(())
    }

    /// Start a cut on a background thread when the head is full, so memory
    /// stays bounded between maintenance ticks without stalling writers.
    pub fn cut_if_full(self: &Arc<Self>) {
        if self.head.read().spans.len() < self.options.max_head_spans
            || self.cutting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("trace-cut".into())
            .spawn(move || {
                if let Err(err) = store.cut() {
                    tracing::error!(error = %err, "cutting the trace head failed");
                }
                store.cutting.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.cutting.store(false, Ordering::Release);
        }
    }

    /// Cut the head into a block if it is big or old enough; apply retention.
    pub fn maintain(&self, now_ms: i64) -> Result<(), TraceStoreError> {
        let due = {
            let head = self.head.read();
            !head.spans.is_empty()
                && (head.spans.len() >= self.options.max_head_spans
                    || now_ms - head.first_arrival_ms >= self.options.block_age_ms)
        };
        if due {
            self.cut()?;
        }
        let horizon_ns = (now_ms - self.options.retention_ms).saturating_mul(1_000_000);
        let expired: Vec<Arc<SpanBlock>> = {
            let mut blocks = self.blocks.write();
            let (old, keep): (Vec<_>, Vec<_>) = blocks
                .drain(..)
                .partition(|b| b.meta.max_end_ns < horizon_ns);
            *blocks = keep;
            old
        };
        for block in expired {
            tracing::info!(block = %block.name, "span block expired");
            std::fs::remove_dir_all(&block.dir)?;
        }
        Ok(())
    }

    /// Write the head as a block now (tests, shutdown, `maintain`).
    pub fn cut(&self) -> Result<(), TraceStoreError> {
        let _cut = self.cut_lock.lock();
        // A cut that failed earlier (disk full, …) left its head frozen and
        // readable, and its WAL segments on disk: write it first, and take
        // no new head until it is in a block.
        let pending = self.frozen.read().clone();
        let pending_checkpoint = *self.frozen_checkpoint.lock();
        if let (Some(frozen), Some(checkpoint)) = (pending, pending_checkpoint) {
            self.write_frozen(&frozen, checkpoint)?;
        }
        let (frozen, checkpoint) = {
            let mut head = self.head.write();
            if head.spans.is_empty() {
                return Ok(());
            }
            let checkpoint = self.wal.cut()?;
            let frozen = Arc::new(std::mem::take(&mut *head));
            *self.frozen.write() = Some(frozen.clone());
            *self.frozen_checkpoint.lock() = Some(checkpoint);
            (frozen, checkpoint)
        };
        self.write_frozen(&frozen, checkpoint)
    }

    /// Write a frozen head as a block, publish it, then drop the WAL
    /// segments before `checkpoint`. On failure the frozen head stays
    /// readable and the WAL stays; nothing half-written is left behind.
    fn write_frozen(&self, frozen: &Head, checkpoint: u64) -> Result<(), TraceStoreError> {
        let mut spans = frozen.spans.clone();
        let dir = block::write_block(&self.options.dir.join("blocks"), &mut spans, checkpoint)?;
        let block = match SpanBlock::open(&dir) {
            Ok(block) => Arc::new(block),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(err.into());
            }
        };
        {
            let mut blocks = self.blocks.write();
            blocks.push(block);
            *self.frozen.write() = None;
            *self.frozen_checkpoint.lock() = None;
        }
        self.save_catalog()?;
        self.wal.remove_before(checkpoint)?;
        Ok(())
    }

    fn save_catalog(&self) -> Result<(), TraceStoreError> {
        // Serialised under the lock, written and fsync'd without it; a
        // change made meanwhile marks the catalogue dirty again.
        let bytes = {
            let mut catalog = self.catalog.write();
            if !catalog.dirty {
                return Ok(());
            }
            catalog.dirty = false;
            serde_json::to_vec(&*catalog).map_err(std::io::Error::other)?
        };
        let path = self.options.dir.join("catalog.json");
        if let Err(err) = crate::storage::write_atomically(&path, &bytes) {
            self.catalog.write().dirty = true;
            return Err(err.into());
        }
        Ok(())
    }

    pub fn close(&self) -> Result<(), TraceStoreError> {
        self.wal.sync_all()?;
        self.save_catalog()
    }

    pub fn services(&self) -> Vec<String> {
        self.catalog.read().services.keys().cloned().collect()
    }

    /// Operations of a service as (name, span kind).
    pub fn operations(&self, service: &str) -> Vec<(String, u8)> {
        self.catalog
            .read()
            .services
            .get(service)
            .map(|ops| ops.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn heads(&self) -> Vec<Arc<Head>> {
        // The live head is copied out only as indices below; frozen is shared.
        self.frozen.read().iter().cloned().collect()
    }

    /// Every span of a trace, from the head and every block holding it.
    pub fn trace(&self, trace: &TraceId) -> Result<Vec<Span>, TraceStoreError> {
        let mut out = Vec::new();
        {
            let head = self.head.read();
            if let Some(rows) = head.by_trace.get(trace) {
                out.extend(rows.iter().map(|&i| head.spans[i as usize].clone()));
            }
        }
        for frozen in self.heads() {
            if let Some(rows) = frozen.by_trace.get(trace) {
                out.extend(rows.iter().map(|&i| frozen.spans[i as usize].clone()));
            }
        }
        let blocks: Vec<Arc<SpanBlock>> = self.blocks.read().clone();
        for block in blocks {
            block.trace(trace, &mut out)?;
        }
        // A span resent in two batches is one span.
        let mut seen = HashSet::new();
        out.retain(|s| seen.insert(s.span_id));
        out.sort_by_key(|s| (s.start_ns, s.span_id));
        Ok(out)
    }

    /// Traces with at least one span matching `query`, newest first (by
    /// the matching span's start), at most `query.limit`.
    pub fn find_traces(&self, query: &TraceQuery) -> Result<Vec<TraceId>, TraceStoreError> {
        let mut newest: HashMap<TraceId, i64> = HashMap::new();
        let mut consider = |span: &Span| {
            if query.matches_columns(
                &span.service,
                &span.name,
                span.kind,
                span.start_ns,
                span.end_ns,
            ) && query.matches_tags(span)
            {
                let entry = newest.entry(span.trace_id).or_insert(span.start_ns);
                *entry = (*entry).max(span.start_ns);
            }
        };
        {
            let head = self.head.read();
            head.spans.iter().for_each(&mut consider);
        }
        for frozen in self.heads() {
            frozen.spans.iter().for_each(&mut consider);
        }
        let blocks: Vec<Arc<SpanBlock>> = self.blocks.read().clone();
        // Only the columns the query filters on are read, with a service
        // filter only the batches holding that service, and trace ids and
        // payloads only for batches with a match.
        let mut projection = vec![block::COL_START, block::COL_END];
        let name_at = query.operation.is_some().then(|| {
            projection.push(block::COL_NAME);
            projection.len() - 1
        });
        let kind_at = query.span_kind.is_some().then(|| {
            projection.push(block::COL_KIND);
            projection.len() - 1
        });
        let service_at = query.service.is_some().then(|| {
            projection.push(block::COL_SERVICE);
            projection.len() - 1
        });
        let needs_payload = !query.tags.is_empty();
        for block in blocks
            .iter()
            .filter(|b| b.overlaps(query.start_ns, query.end_ns))
        {
            let (mut id_reader, mut full_reader) = (None, None);
            let visit = |batch: usize, columns: &block::Columns| {
                let (starts, ends) = (columns.i64s(0), columns.i64s(1));
                let mut traces: Option<block::Columns> = None;
                let names = name_at.map(|i| columns.strings(i));
                let kinds = kind_at.map(|i| columns.u8s(i));
                let services = service_at.map(|i| columns.strings(i));
                let mut full: Option<block::Columns> = None;
                for row in 0..columns.batch.num_rows() {
                    if let (Some(wanted), Some(services)) = (&query.service, services) {
                        if services.value(row) != wanted {
                            continue;
                        }
                    }
                    let (start, end) = (starts.value(row), ends.value(row));
                    if !query.matches_columns(
                        query.service.as_deref().unwrap_or(""),
                        names.map_or("", |c| c.value(row)),
                        kinds.map_or(0, |c| c.value(row)),
                        start,
                        end,
                    ) {
                        continue;
                    }
                    if needs_payload {
                        if full.is_none() {
                            if full_reader.is_none() {
                                full_reader = Some(block.reader(None)?);
                            }
                            full = full_reader.as_mut().map(|r| r.batch(batch)).transpose()?;
                        }
                        let span = full.as_ref().and_then(|c| c.span(row));
                        if !span.is_some_and(|s| query.matches_tags(&s)) {
                            continue;
                        }
                    }
                    if traces.is_none() {
                        traces = match &full {
                            Some(full) => Some(block::Columns {
                                batch: full.batch.project(&[block::COL_TRACE_ID])?,
                            }),
                            None => {
                                if id_reader.is_none() {
                                    id_reader =
                                        Some(block.reader(Some(vec![block::COL_TRACE_ID]))?);
                                }
                                id_reader.as_mut().map(|r| r.batch(batch)).transpose()?
                            }
                        };
                    }
                    let id = traces.as_ref().map(|c| c.fixed(0).value(row));
                    let Some(Ok(trace)) = id.map(<TraceId>::try_from) else {
                        continue;
                    };
                    let entry = newest.entry(trace).or_insert(start);
                    *entry = (*entry).max(start);
                }
                Ok(())
            };
            match &query.service {
                None => block.scan(projection.clone(), visit)?,
                Some(name) => match block.batches_of_service(name) {
                    Some(batches) => block.scan_batches(
                        batches.iter().map(|b| b as usize),
                        projection.clone(),
                        visit,
                    )?,
                    None => continue,
                },
            }
        }
        let mut found: Vec<(TraceId, i64)> = newest.into_iter().collect();
        found.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        found.truncate(query.limit);
        Ok(found.into_iter().map(|(t, _)| t).collect())
    }

    /// Every span that started in `[start_ns, end_ns]` and whose kind is in
    /// `kinds` (all kinds when empty), in no particular order. Blocks are
    /// read column by column: payloads only for batches with a match.
    /// `visit` returns false to stop early.
    pub fn for_each_span(
        &self,
        start_ns: i64,
        end_ns: i64,
        kinds: &[u8],
        mut visit: impl FnMut(&Span) -> bool,
    ) -> Result<(), TraceStoreError> {
        let wanted = |start: i64, kind: u8| {
            start >= start_ns && start <= end_ns && (kinds.is_empty() || kinds.contains(&kind))
        };
        let mut going = true;
        {
            let head = self.head.read();
            for span in head.spans.iter().filter(|s| wanted(s.start_ns, s.kind)) {
                if !visit(span) {
                    return Ok(());
                }
            }
        }
        for frozen in self.heads() {
            for span in frozen.spans.iter().filter(|s| wanted(s.start_ns, s.kind)) {
                if !visit(span) {
                    return Ok(());
                }
            }
        }
        let blocks: Vec<Arc<SpanBlock>> = self.blocks.read().clone();
        for block in blocks.iter().filter(|b| b.overlaps(start_ns, end_ns)) {
            let mut full_reader = None;
            block.scan(vec![block::COL_START, block::COL_KIND], |batch, columns| {
                if !going {
                    return Ok(());
                }
                let (starts, kinds) = (columns.i64s(0), columns.u8s(1));
                let mut full: Option<block::Columns> = None;
                for row in 0..columns.batch.num_rows() {
                    if !wanted(starts.value(row), kinds.value(row)) {
                        continue;
                    }
                    if full.is_none() {
                        if full_reader.is_none() {
                            full_reader = Some(block.reader(None)?);
                        }
                        full = full_reader.as_mut().map(|r| r.batch(batch)).transpose()?;
                    }
                    if let Some(span) = full.as_ref().and_then(|c| c.span(row)) {
                        if !visit(&span) {
                            going = false;
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })?;
            if !going {
                break;
            }
        }
        Ok(())
    }

    /// One partition of a column scan (SQL's `spans` table): the spans of
    /// the heads that started in `[start_ns, end_ns]` go to `head` (in
    /// partition 0), and the record batches of the blocks overlapping it,
    /// with the block columns in `projection`, go to `batch`. Record
    /// batches are dealt to the `parts` partitions in turn; with `service`,
    /// only the batches holding that service are read. Rows of a batch may lie
    /// outside the range or belong to other services: the caller filters.
    /// Either visitor returns false to stop.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_part(
        &self,
        part: usize,
        parts: usize,
        start_ns: i64,
        end_ns: i64,
        service: Option<&str>,
        projection: Vec<usize>,
        mut head: impl FnMut(&Span) -> bool,
        mut batch: impl FnMut(&RecordBatch) -> bool,
    ) -> Result<(), TraceStoreError> {
        let wanted = |s: &Span| {
            s.start_ns >= start_ns
                && s.start_ns <= end_ns
                && service.is_none_or(|name| s.service == name)
        };
        if part == 0 {
            let live = self.head.read();
            for span in live.spans.iter().filter(|s| wanted(s)) {
                if !head(span) {
                    return Ok(());
                }
            }
            drop(live);
            for frozen in self.heads() {
                for span in frozen.spans.iter().filter(|s| wanted(s)) {
                    if !head(span) {
                        return Ok(());
                    }
                }
            }
        }
        let blocks: Vec<Arc<SpanBlock>> = self.blocks.read().clone();
        let mut dealt = 0usize;
        for block in blocks.iter().filter(|b| b.overlaps(start_ns, end_ns)) {
            let candidates: Vec<usize> = match service {
                None => (0..block.num_batches()).collect(),
                Some(name) => match block.batches_of_service(name) {
                    Some(batches) => batches.iter().map(|b| b as usize).collect(),
                    None => continue,
                },
            };
            let mine: Vec<usize> = candidates
                .into_iter()
                .filter(|_| {
                    dealt += 1;
                    (dealt - 1) % parts.max(1) == part
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut reader = block.reader(Some(projection.clone()))?;
            for index in mine {
                if !batch(&reader.batch(index)?.batch) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The traces [`TraceStore::find_traces`] finds, each assembled.
    pub fn find_and_assemble(&self, query: &TraceQuery) -> Result<Vec<Vec<Span>>, TraceStoreError> {
        self.assemble(&self.find_traces(query)?)
    }

    /// The traces with these ids, each assembled; those no longer stored
    /// (retention) are left out.
    pub fn assemble(&self, ids: &[TraceId]) -> Result<Vec<Vec<Span>>, TraceStoreError> {
        let mut traces = Vec::with_capacity(ids.len());
        for id in ids {
            let spans = self.trace(id)?;
            if !spans.is_empty() {
                traces.push(spans);
            }
        }
        Ok(traces)
    }

    /// Service-to-service call counts from parent/child spans that started
    /// in `[start_ns, end_ns]`.
    pub fn dependencies(
        &self,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<Dependency>, TraceStoreError> {
        // (trace, span) → service, and the (trace, parent, child service) of every child.
        let mut services: HashMap<(TraceId, SpanId), String> = HashMap::new();
        // (trace, parent, child service, failed, duration)
        let mut children: Vec<(TraceId, SpanId, String, bool, i64)> = Vec::new();
        let mut add = |trace: TraceId,
                       span: SpanId,
                       parent: Option<SpanId>,
                       service: &str,
                       start: i64,
                       end: i64,
                       status: u8| {
            if start < start_ns || start > end_ns {
                return;
            }
            // A span seen twice (a read racing a head cut) counts once.
            if services.insert((trace, span), service.to_owned()).is_some() {
                return;
            }
            if let Some(parent) = parent {
                children.push((
                    trace,
                    parent,
                    service.to_owned(),
                    status == crate::model::span::STATUS_ERROR,
                    end - start,
                ));
            }
        };
        {
            let head = self.head.read();
            for s in &head.spans {
                add(
                    s.trace_id,
                    s.span_id,
                    s.parent_span_id,
                    &s.service,
                    s.start_ns,
                    s.end_ns,
                    s.status_code,
                );
            }
        }
        for frozen in self.heads() {
            for s in &frozen.spans {
                add(
                    s.trace_id,
                    s.span_id,
                    s.parent_span_id,
                    &s.service,
                    s.start_ns,
                    s.end_ns,
                    s.status_code,
                );
            }
        }
        let blocks: Vec<Arc<SpanBlock>> = self.blocks.read().clone();
        let projection = vec![
            block::COL_TRACE_ID,
            block::COL_SPAN_ID,
            block::COL_PARENT,
            block::COL_SERVICE,
            block::COL_START,
            block::COL_END,
            block::COL_STATUS,
        ];
        for block in blocks.iter().filter(|b| b.overlaps(start_ns, end_ns)) {
            block.scan(projection.clone(), |_, c| {
                let (traces, spans, parents) = (c.fixed(0), c.fixed(1), c.fixed(2));
                let (svc, starts, ends, statuses) = (c.strings(3), c.i64s(4), c.i64s(5), c.u8s(6));
                for row in 0..c.batch.num_rows() {
                    let (Ok(trace), Ok(span)) = (
                        <TraceId>::try_from(traces.value(row)),
                        <SpanId>::try_from(spans.value(row)),
                    ) else {
                        continue;
                    };
                    let parent = if arrow_array::Array::is_null(parents, row) {
                        None
                    } else {
                        <SpanId>::try_from(parents.value(row)).ok()
                    };
                    add(
                        trace,
                        span,
                        parent,
                        svc.value(row),
                        starts.value(row),
                        ends.value(row),
                        statuses.value(row),
                    );
                }
                Ok(())
            })?;
        }
        let mut edges: BTreeMap<(String, String), (u64, Vec<i64>)> = BTreeMap::new();
        for (trace, parent, child_service, failed, duration) in children {
            if let Some(parent_service) = services.get(&(trace, parent)) {
                if *parent_service != child_service {
                    let edge = edges
                        .entry((parent_service.clone(), child_service))
                        .or_default();
                    edge.0 += u64::from(failed);
                    edge.1.push(duration);
                }
            }
        }
        Ok(edges
            .into_iter()
            .map(|((parent, child), (errors, mut durations))| {
                durations.sort_unstable();
                let at = |q: f64| {
                    let i = ((durations.len() as f64 - 1.0) * q).round() as usize;
                    durations.get(i).copied().unwrap_or(0)
                };
                Dependency {
                    parent,
                    child,
                    call_count: durations.len() as u64,
                    error_count: errors,
                    p50_ns: at(0.5),
                    p95_ns: at(0.95),
                }
            })
            .collect())
    }

    /// Spans in the head, blocks and their bytes (for self-metrics and status).
    pub fn summary(&self) -> (u64, u64, u64) {
        let head = self.head.read().spans.len() as u64;
        let blocks = self.blocks.read();
        (
            head,
            blocks.len() as u64,
            blocks.iter().map(|b| b.disk_bytes).sum(),
        )
    }

    /// Memory held by the blocks' in-memory indexes.
    pub fn index_bytes(&self) -> usize {
        self.blocks.read().iter().map(|b| b.index_bytes()).sum()
    }

    pub fn wal_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }
}

#[cfg(test)]
mod tests;

//! The log store: a tantivy index per time partition, a catalogue of indices
//! and their mappings, and a WAL in front of both.
//!
//! Writes: [`LogStore::append`] types each document against its index's
//! mapping (rejecting misfits per document), logs the accepted ones to the WAL
//! and hands them to their partition's tantivy writer under one lock, then
//! waits for the WAL fsync before returning. Documents become searchable at
//! the next commit ([`LogStore::commit`], every `logs.commit_interval` or on
//! `refresh`), which runs on a blocking thread, never on the async runtime.
//!
//! **Invariant:** every acknowledged document is in a committed partition or
//! in a WAL segment that has not been deleted. A commit cuts the WAL under the
//! write lock, commits every partition written since the last cut, saves the
//! catalogue and only then deletes the older segments. Replay re-adds the
//! documents of the remaining segments, skipping those a commit already holds
//! (looked up by `_uid`), so a crash between commit and WAL deletion
//! duplicates nothing.
//!
//! On disk: `DATA/logs/{wal/, catalog.json, partitions/p-<start ms>/}`.

pub mod catalog;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Searcher, Term};

use self::catalog::{Catalog, DocError, TypedDoc};
use self::schema::{DocId, LogSchema};
use crate::config::{Config, FsyncPolicy};
use crate::model::log::{valid_index_name, LogDoc, WriteOp};
use crate::now_ms;
use crate::storage::codec::{put_str, put_uvarint, put_varint, Reader};
use crate::storage::wal::{self, Wal};

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("wal: {0}")]
    Io(#[from] std::io::Error),
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// Request batches the live tail keeps for its slowest subscriber; older
/// ones are skipped for it (it is told how many).
const TAIL_BATCHES: usize = 16;

/// Store settings taken from [`Config`].
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    pub dir: PathBuf,
    pub retention_ms: i64,
    /// Records stamped later than now + this are rejected (no partitions
    /// for far-future days).
    pub accept_ahead_ms: i64,
    pub partition_ms: i64,
    pub writer_memory: usize,
    pub keyword_ignore_above: usize,
    pub max_fields: usize,
    pub max_indices: usize,
    pub wal_segment_size: u64,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// Readers of the WAL besides replay (forwarders).
    pub wal_readers: Vec<String>,
}

impl LogStoreOptions {
    pub fn new(dir: &Path) -> LogStoreOptions {
        LogStoreOptions {
            dir: dir.to_owned(),
            ..LogStoreOptions::from_config(&Config::default_config())
        }
    }

    pub fn from_config(config: &Config) -> LogStoreOptions {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        LogStoreOptions {
            dir: config.storage.data_dir.join("logs"),
            retention_ms: ms(config.logs.retention),
            accept_ahead_ms: ms(config.limits.creation_grace_period),
            partition_ms: ms(config.logs.partition),
            writer_memory: config.logs.writer_memory.as_usize(),
            keyword_ignore_above: config.logs.keyword_ignore_above,
            max_fields: config.logs.max_fields_per_index,
            max_indices: config.logs.max_indices,
            wal_segment_size: config.wal.segment_size.0,
            fsync: config.wal.fsync,
            fsync_interval: config.wal.fsync_interval,
            wal_readers: crate::forward::wal_readers(config, crate::forward::Signal::Logs),
        }
    }
}

/// How one document of a batch fared.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    pub index: String,
    pub id: String,
    pub op: WriteOp,
    pub result: Result<Written, ItemError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

/// A refused document: HTTP status, Elasticsearch error type and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub status: u16,
    pub kind: &'static str,
    pub reason: String,
}

impl From<DocError> for ItemError {
    fn from(err: DocError) -> Self {
        ItemError {
            status: 400,
            kind: err.kind,
            reason: err.reason,
        }
    }
}

/// A document as stored: what a live tail sees.
#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub index: String,
    pub id: String,
    pub timestamp_ns: i64,
    pub source: Arc<serde_json::Map<String, serde_json::Value>>,
}

/// Counters for the self-metrics.
#[derive(Debug, Default)]
pub struct LogStoreStats {
    pub commits: AtomicU64,
}

/// One time partition: a tantivy index covering `[start_ms, start_ms + partition_ms)`.
pub struct Partition {
    pub start_ms: i64,
    pub end_ms: i64,
    dir: PathBuf,
    pub index: Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    dirty: AtomicBool,
    last_write_ms: AtomicI64,
}

impl Partition {
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    fn with_writer<T>(
        &self,
        memory: usize,
        f: impl FnOnce(&IndexWriter) -> T,
    ) -> Result<T, LogStoreError> {
        let mut guard = self.writer.lock();
        if guard.is_none() {
            *guard = Some(self.index.writer_with_num_threads(1, memory)?);
        }
        Ok(f(guard.as_ref().expect("writer opened")))
    }
}

pub struct LogStore {
    pub options: LogStoreOptions,
    pub schema: LogSchema,
    wal: Arc<Wal>,
    pub catalog: RwLock<Catalog>,
    partitions: RwLock<BTreeMap<i64, Arc<Partition>>>,
    /// Orders WAL appends and writer additions against commit cuts; holds
    /// the next sequence number of generated ids, so that sequence order is
    /// WAL order and writer order.
    write_lock: Mutex<u64>,
    commit_lock: Mutex<()>,
    /// Explicit ids written since the last cut / being committed, for `create` conflicts.
    pending_ids: Mutex<(HashSet<String>, HashSet<String>)>,
    /// This process's half of generated ids.
    id_seed: u64,
    tail: tokio::sync::broadcast::Sender<Arc<Vec<StoredDoc>>>,
    pub stats: LogStoreStats,
    /// Commits that made records older than the results cache's freshness
    /// bound searchable (or replaced or deleted records of unknown time).
    pub late: crate::storage::metrics::late::LateWrites,
    /// The oldest record time (ms) written since the last commit began.
    late_pending: std::sync::atomic::AtomicI64,
}

const RECORD_DOCS: u8 = 1;
const RECORD_DELETE_INDEX: u8 = 2;

impl LogStore {
    /// Why this store's WAL stopped accepting writes, if it did (a failed
    /// write or fsync; see `storage::wal`).
    pub fn wal_failure(&self) -> Option<String> {
        self.wal.failure()
    }

    pub fn open(options: LogStoreOptions) -> Result<Arc<LogStore>, LogStoreError> {
        let parts_dir = options.dir.join("partitions");
        std::fs::create_dir_all(&parts_dir)?;
        let schema = LogSchema::new();
        let catalog = Catalog::load(&options.dir.join("catalog.json"))?;
        let mut partitions = BTreeMap::new();
        for entry in std::fs::read_dir(&parts_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(start) = name.strip_prefix("p-").and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            match open_partition(&entry.path(), start, options.partition_ms, &schema) {
                Ok(p) => {
                    partitions.insert(start, Arc::new(p));
                }
                // Out of file descriptors or memory: the partition is fine; stop.
                Err(err) if crate::storage::is_transient(&err) => return Err(err),
                Err(err) => {
                    let aside = parts_dir.join(format!("corrupt-{name}"));
                    tracing::error!(partition = %name, error = %err, moved_to = %aside.display(),
                        "cannot open log partition; moved aside");
                    std::fs::rename(entry.path(), aside)?;
                }
            }
        }
        let mut records = Vec::new();
        let (wal, report) = Wal::open_with_readers(
            &options.dir.join("wal"),
            options.wal_segment_size,
            0,
            &options.wal_readers,
            |p| records.push(p.to_vec()),
        )?;
        // Batches a slow live-tail subscriber can hold back (each one request's
        // documents): the memory one subscriber can pin is this many bodies.
        let (tail, _) = tokio::sync::broadcast::channel(TAIL_BATCHES);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        let store = Arc::new(LogStore {
            schema,
            wal: Arc::new(wal),
            catalog: RwLock::new(catalog),
            partitions: RwLock::new(partitions),
            write_lock: Mutex::new(0),
            commit_lock: Mutex::new(()),
            pending_ids: Mutex::new(Default::default()),
            id_seed: xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes()),
            tail,
            stats: LogStoreStats::default(),
            late: Default::default(),
            late_pending: std::sync::atomic::AtomicI64::new(i64::MAX),
            options,
        });
        let (mut replayed, mut skipped) = (0u64, 0u64);
        let mut committed_seqs = HashMap::new();
        for payload in &records {
            match decode_record(payload) {
                Some(WalRecord::Docs(docs)) => {
                    for doc in docs {
                        if store.replay_doc(doc, &mut committed_seqs)? {
                            replayed += 1;
                        } else {
                            skipped += 1;
                        }
                    }
                }
                Some(WalRecord::DeleteIndex(name)) => store.delete_index_unlogged(&name)?,
                None => tracing::warn!("skipping undecodable log wal record"),
            }
        }
        if !records.is_empty() {
            store.commit()?;
        }
        tracing::info!(
            partitions = store.partitions.read().len(),
            indices = store.catalog.read().indices.len(),
            wal_segments = report.segments,
            wal_repairs = report.repairs.len(),
            replayed,
            already_committed = skipped,
            "log store opened"
        );
        if store.options.fsync == FsyncPolicy::Interval {
            wal::spawn_interval_sync(Arc::downgrade(&store.wal), store.options.fsync_interval);
        }
        Ok(store)
    }

    /// The WAL reader registered as `name` (see `LogStoreOptions::wal_readers`).
    pub fn wal_reader(&self, name: &str) -> Option<crate::storage::wal::WalReader> {
        self.wal.reader(name)
    }

    /// Subscribe to every document stored from now on, unless `max`
    /// subscribers are already listening.
    pub fn subscribe(
        &self,
        max: usize,
    ) -> Option<tokio::sync::broadcast::Receiver<Arc<Vec<StoredDoc>>>> {
        (self.tail.receiver_count() < max).then(|| self.tail.subscribe())
    }

    /// Store a batch. Each document is typed and checked on its own; the
    /// accepted ones are durable when this returns.
    pub fn append(
        &self,
        docs: Vec<LogDoc>,
        now_ms: i64,
    ) -> Result<Vec<ItemOutcome>, LogStoreError> {
        let oldest_ms = now_ms.saturating_sub(self.options.retention_ms);
        let newest_ms = now_ms.saturating_add(self.options.accept_ahead_ms);
        let mut outcomes = Vec::with_capacity(docs.len());
        let mut accepted: Vec<Accepted> = Vec::new();
        {
            // Documents whose fields are all known are typed under a shared
            // lock (concurrent requests in parallel); only documents that add
            // fields or indices take the write lock, in request order.
            let mut known: Vec<Option<Result<TypedDoc, DocError>>> = {
                let catalog = self.catalog.read();
                docs.iter()
                    .map(|d| catalog.type_known(&d.index, &d.source))
                    .collect()
            };
            for (i, mut doc) in docs.into_iter().enumerate() {
                let ts = doc.timestamp_ns.unwrap_or(now_ms.saturating_mul(1_000_000));
                // Generated ids get their sequence number under the write lock.
                let id = doc.id.clone().unwrap_or_default();
                let fail = |status, kind, reason| ItemOutcome {
                    index: doc.index.clone(),
                    id: id.clone(),
                    op: doc.op,
                    result: Err(ItemError {
                        status,
                        kind,
                        reason,
                    }),
                };
                if let Err(reason) = valid_index_name(&doc.index) {
                    outcomes.push(fail(400, "invalid_index_name_exception", reason));
                    continue;
                }
                if ts / 1_000_000 > newest_ms {
                    outcomes.push(fail(
                        400,
                        "illegal_argument_exception",
                        format!(
                            "document timestamp {} is too far in the future (limits.creation_grace_period)",
                            crate::model::log::format_timestamp_ms(ts)
                        ),
                    ));
                    continue;
                }
                if ts / 1_000_000 < oldest_ms {
                    outcomes.push(fail(
                        400,
                        "illegal_argument_exception",
                        format!(
                            "document timestamp {} is older than the retention period (logs.retention)",
                            crate::model::log::format_timestamp_ms(ts)
                        ),
                    ));
                    continue;
                }
                let typed = match known[i].take() {
                    Some(result) => result,
                    None => {
                        // The write lock, per document: held for one
                        // document's typing, so readers (and other writers)
                        // never wait for a whole batch.
                        let mut catalog = self.catalog.write();
                        if !catalog.indices.contains_key(&doc.index)
                            && catalog.indices.len() >= self.options.max_indices
                        {
                            outcomes.push(fail(
                                400,
                                "illegal_argument_exception",
                                format!(
                                    "cannot create index [{}]: there are {} indices already (logs.max_indices)",
                                    doc.index,
                                    catalog.indices.len()
                                ),
                            ));
                            continue;
                        }
                        catalog.type_document(
                            &doc.index,
                            &doc.source,
                            now_ms,
                            self.options.max_fields,
                        )
                    }
                };
                let typed = match typed {
                    Ok(typed) => typed,
                    Err(err) => {
                        let err = ItemError::from(err);
                        outcomes.push(fail(err.status, err.kind, err.reason));
                        continue;
                    }
                };
                let source = match doc.raw.take() {
                    Some(raw) => raw,
                    None => serde_json::to_vec(&doc.source).expect("JSON values serialize"),
                };
                outcomes.push(ItemOutcome {
                    index: doc.index.clone(),
                    id: id.clone(),
                    op: doc.op,
                    result: Ok(Written::Created),
                });
                accepted.push(Accepted {
                    slot: outcomes.len() - 1,
                    id: match doc.id.take() {
                        Some(id) => DocId::Explicit(id),
                        None => DocId::Generated {
                            seed: self.id_seed,
                            seq: 0,
                        },
                    },
                    doc,
                    typed,
                    ts,
                    source,
                });
            }
        }
        // Explicit ids: `create` conflicts with an existing id, `index` replaces it.
        let mut replaced = HashSet::new();
        let mut seen = HashSet::new();
        for item in &accepted {
            let DocId::Explicit(id) = &item.id else {
                continue;
            };
            let uid = schema::uid(&item.doc.index, id);
            if !seen.insert(uid.clone()) || self.exists(&uid) {
                match item.doc.op {
                    WriteOp::Create => {
                        outcomes[item.slot].result = Err(ItemError {
                            status: 409,
                            kind: "version_conflict_engine_exception",
                            reason: format!(
                                "[{id}]: version conflict, document already exists (current version [1])"
                            ),
                        })
                    }
                    WriteOp::Index => {
                        outcomes[item.slot].result = Ok(Written::Updated);
                        replaced.insert(uid);
                    }
                }
            }
        }
        accepted.retain(|item| outcomes[item.slot].result.is_ok());
        if accepted.is_empty() {
            return Ok(outcomes);
        }
        // The WAL record: a header with the generated ids' seed and first
        // sequence number (patched in under the lock), then the documents.
        let mut record = vec![RECORD_DOCS];
        put_uvarint(&mut record, accepted.len() as u64);
        record.extend_from_slice(&self.id_seed.to_le_bytes());
        let base_at = record.len();
        record.extend_from_slice(&0u64.to_le_bytes());
        let mut built = Vec::with_capacity(accepted.len());
        let want_tail = self.tail.receiver_count() > 0;
        let mut tail = Vec::new();
        for Accepted {
            slot,
            doc,
            id,
            typed,
            ts,
            source,
        } in accepted
        {
            put_str(&mut record, &doc.index);
            let generated = matches!(id, DocId::Generated { .. });
            let flags = u8::from(doc.op == WriteOp::Create) | (u8::from(generated) << 1);
            record.push(flags);
            if let DocId::Explicit(id) = &id {
                put_str(&mut record, id);
            }
            put_varint(&mut record, ts);
            put_uvarint(&mut record, source.len() as u64);
            record.extend_from_slice(&source);
            let tdoc = self.schema.document(
                &doc.index,
                &id,
                ts,
                typed,
                &source,
                self.options.keyword_ignore_above,
            );
            let uid = match &id {
                DocId::Explicit(explicit) => Some(schema::uid(&doc.index, explicit)),
                DocId::Generated { .. } => None,
            };
            built.push((slot, ts, tdoc, uid));
            if want_tail {
                tail.push((slot, doc, ts));
            }
        }
        // A replaced record's old time is unknown: it could be any.
        let oldest_ms = if replaced.is_empty() {
            built
                .iter()
                .map(|(_, ts, _, _)| ts.div_euclid(1_000_000))
                .min()
                .unwrap_or(i64::MAX)
        } else {
            i64::MIN
        };
        let seq = {
            let mut next_seq = self.write_lock.lock();
            record[base_at..base_at + 8].copy_from_slice(&next_seq.to_le_bytes());
            // Under the lock a commit takes this value under: a record
            // becomes searchable at this commit or the next, never before
            // its time is counted.
            self.late_pending.fetch_min(oldest_ms, Ordering::AcqRel);
            let seq = self.wal.append(&record)?;
            let mut pending = self.pending_ids.lock();
            for (slot, ts, mut tdoc, uid) in built {
                match uid {
                    Some(uid) => {
                        if replaced.contains(&uid) {
                            self.delete_uid_everywhere(&uid)?;
                        }
                        pending.0.insert(uid);
                    }
                    None => {
                        self.schema.set_seq(&mut tdoc, *next_seq);
                        outcomes[slot].id = schema::generated_id(self.id_seed, *next_seq);
                        *next_seq += 1;
                    }
                }
                self.add_to_partition(ts, tdoc, now_ms)?;
            }
            seq
        };
        if self.options.fsync == FsyncPolicy::Always {
            self.wal.sync(seq)?;
        }
        if want_tail {
            let batch = tail
                .into_iter()
                .map(|(slot, doc, ts)| StoredDoc {
                    index: doc.index,
                    id: outcomes[slot].id.clone(),
                    timestamp_ns: ts,
                    source: Arc::new(doc.source),
                })
                .collect();
            let _ = self.tail.send(Arc::new(batch));
        }
        Ok(outcomes)
    }

    /// Make everything written so far searchable and durable in the
    /// partitions; then drop the WAL segments that held it.
    pub fn commit(&self) -> Result<(), LogStoreError> {
        let _commit = self.commit_lock.lock();
        let (cut, dirty, late) = {
            let _guard = self.write_lock.lock();
            let late = self.late_pending.swap(i64::MAX, Ordering::AcqRel);
            let cut = self.wal.cut()?;
            let dirty: Vec<Arc<Partition>> = self
                .partitions
                .read()
                .values()
                .filter(|p| p.dirty.swap(false, Ordering::AcqRel))
                .cloned()
                .collect();
            let mut pending = self.pending_ids.lock();
            let fresh = std::mem::take(&mut pending.0);
            pending.1.extend(fresh);
            (cut, dirty, late)
        };
        for partition in &dirty {
            let mut guard = partition.writer.lock();
            if let Some(writer) = guard.as_mut() {
                if let Err(err) = writer.commit() {
                    partition.dirty.store(true, Ordering::Release);
                    self.late_pending.fetch_min(late, Ordering::AcqRel);
                    return Err(err.into());
                }
            }
            drop(guard);
            if let Err(err) = partition.reader.reload() {
                self.late_pending.fetch_min(late, Ordering::AcqRel);
                return Err(err.into());
            }
        }
        // Searchable now: what was computed before may have missed them.
        if late != i64::MAX {
            self.late.note(late, crate::now_ns());
        }
        // Serialised under the lock, written and fsync'd without it (a
        // change made meanwhile marks the catalogue dirty again).
        let snapshot = self.catalog.write().take_snapshot()?;
        if let Some(bytes) = snapshot {
            if let Err(err) =
                crate::storage::write_atomically(&self.options.dir.join("catalog.json"), &bytes)
            {
                self.catalog.write().dirty = true;
                return Err(err.into());
            }
        }
        self.wal.remove_before(cut)?;
        self.pending_ids.lock().1.clear();
        if !dirty.is_empty() {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Retention (whole partitions) and closing writers that went idle.
    pub fn maintain(&self, now_ms: i64, idle_ms: i64) -> Result<(), LogStoreError> {
        let oldest = now_ms.saturating_sub(self.options.retention_ms);
        let expired: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write();
            let keys: Vec<i64> = partitions
                .values()
                .filter(|p| p.end_ms <= oldest)
                .map(|p| p.start_ms)
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for partition in expired {
            if let Some(writer) = partition.writer.lock().take() {
                let _ = writer.wait_merging_threads();
            }
            tracing::info!(partition = partition.start_ms, "log partition expired");
            std::fs::remove_dir_all(&partition.dir)?;
        }
        let idle: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .values()
            .filter(|p| {
                !p.dirty.load(Ordering::Acquire)
                    && p.last_write_ms.load(Ordering::Relaxed) < now_ms - idle_ms
                    && p.writer.lock().is_some()
            })
            .cloned()
            .collect();
        for partition in idle {
            let _guard = self.write_lock.lock();
            if partition.dirty.load(Ordering::Acquire) {
                continue;
            }
            if let Some(writer) = partition.writer.lock().take() {
                drop(_guard);
                let _ = writer.wait_merging_threads();
            }
        }
        Ok(())
    }

    /// Delete an index and all its documents (logged, then committed).
    pub fn delete_index(&self, name: &str) -> Result<bool, LogStoreError> {
        if !self.catalog.read().indices.contains_key(name) {
            return Ok(false);
        }
        let mut record = vec![RECORD_DELETE_INDEX];
        put_str(&mut record, name);
        {
            let _guard = self.write_lock.lock();
            let seq = self.wal.append(&record)?;
            self.wal.sync(seq)?;
            self.delete_index_unlogged(name)?;
            // Records of any time are gone at this commit (or a later one).
            self.late_pending.fetch_min(i64::MIN, Ordering::AcqRel);
        }
        self.commit()?;
        Ok(true)
    }

    /// Create an index with explicit field mappings (`PUT /<index>`).
    pub fn create_index(
        &self,
        name: &str,
        fields: Vec<(String, catalog::FieldMapping)>,
        now_ms: i64,
    ) -> Result<bool, String> {
        valid_index_name(name)?;
        let mut catalog = self.catalog.write();
        if catalog.indices.contains_key(name) {
            return Ok(false);
        }
        if catalog.indices.len() >= self.options.max_indices {
            return Err(format!(
                "cannot create index [{name}]: there are {} indices already (logs.max_indices)",
                catalog.indices.len()
            ));
        }
        let meta = catalog.ensure_index(name, now_ms);
        for (path, mapping) in fields {
            meta.fields.insert(path, mapping);
        }
        catalog.dirty = true;
        catalog
            .save(&self.options.dir.join("catalog.json"))
            .map_err(|err| err.to_string())?;
        Ok(true)
    }

    /// Partitions overlapping `[from_ms, to_ms]`, oldest first.
    pub fn partitions_between(&self, from_ms: i64, to_ms: i64) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .values()
            .filter(|p| p.end_ms > from_ms && p.start_ms <= to_ms)
            .cloned()
            .collect()
    }

    /// Bytes of every partition directory.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| match e.metadata() {
                            Ok(m) if m.is_dir() => walk(&e.path()),
                            Ok(m) => m.len(),
                            Err(_) => 0,
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.options.dir.join("partitions"))
    }

    pub fn wal_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }

    pub fn close(&self) -> Result<(), LogStoreError> {
        self.commit()?;
        self.wal.sync_all()?;
        Ok(())
    }

    fn exists(&self, uid: &str) -> bool {
        {
            let pending = self.pending_ids.lock();
            if pending.0.contains(uid) || pending.1.contains(uid) {
                return true;
            }
        }
        let term = Term::from_field_text(self.schema.uid, uid);
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        let partitions: Vec<Arc<Partition>> = self.partitions.read().values().cloned().collect();
        partitions
            .iter()
            .any(|p| p.searcher().search(&query, &Count).unwrap_or(0) > 0)
    }

    fn delete_uid_everywhere(&self, uid: &str) -> Result<(), LogStoreError> {
        let term = Term::from_field_text(self.schema.uid, uid);
        let partitions: Vec<Arc<Partition>> = self.partitions.read().values().cloned().collect();
        for partition in partitions {
            partition.with_writer(self.options.writer_memory, |w| {
                w.delete_term(term.clone());
            })?;
            partition.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn delete_index_unlogged(&self, name: &str) -> Result<(), LogStoreError> {
        let term = Term::from_field_text(self.schema.index, name);
        let partitions: Vec<Arc<Partition>> = self.partitions.read().values().cloned().collect();
        for partition in partitions {
            partition.with_writer(self.options.writer_memory, |w| {
                w.delete_term(term.clone());
            })?;
            partition.dirty.store(true, Ordering::Release);
        }
        let mut catalog = self.catalog.write();
        if catalog.indices.remove(name).is_some() {
            catalog.dirty = true;
        }
        Ok(())
    }

    fn partition_for(&self, ts_ns: i64) -> Result<Arc<Partition>, LogStoreError> {
        let ms = ts_ns.div_euclid(1_000_000);
        let start = ms.div_euclid(self.options.partition_ms) * self.options.partition_ms;
        if let Some(p) = self.partitions.read().get(&start) {
            return Ok(p.clone());
        }
        let mut partitions = self.partitions.write();
        if let Some(p) = partitions.get(&start) {
            return Ok(p.clone());
        }
        let dir = self
            .options
            .dir
            .join("partitions")
            .join(format!("p-{start}"));
        let partition = Arc::new(open_partition(
            &dir,
            start,
            self.options.partition_ms,
            &self.schema,
        )?);
        partitions.insert(start, partition.clone());
        Ok(partition)
    }

    fn add_to_partition(
        &self,
        ts_ns: i64,
        doc: tantivy::TantivyDocument,
        now_ms: i64,
    ) -> Result<(), LogStoreError> {
        let partition = self.partition_for(ts_ns)?;
        partition.with_writer(self.options.writer_memory, |w| w.add_document(doc))??;
        partition.dirty.store(true, Ordering::Release);
        partition.last_write_ms.store(now_ms, Ordering::Relaxed);
        Ok(())
    }

    /// Re-add a document from the WAL unless a commit already holds it:
    /// explicit ids are looked up; a generated id is committed iff its
    /// sequence number is at most the highest committed one of its seed in
    /// its partition (sequence order is writer order, see `write_lock`).
    fn replay_doc(
        &self,
        doc: WalDoc,
        committed_seqs: &mut HashMap<i64, HashMap<u64, u64>>,
    ) -> Result<bool, LogStoreError> {
        let now_ms = now_ms();
        if doc.ts / 1_000_000 < now_ms - self.options.retention_ms {
            return Ok(false);
        }
        let source: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_slice(&doc.source) {
                Ok(source) => source,
                Err(_) => return Ok(false),
            };
        let typed = {
            let mut catalog = self.catalog.write();
            match catalog.type_document(&doc.index, &source, now_ms, usize::MAX) {
                Ok(typed) => typed,
                Err(_) => return Ok(false),
            }
        };
        let partition = self.partition_for(doc.ts)?;
        match &doc.id {
            DocId::Explicit(id) => {
                let query = TermQuery::new(
                    Term::from_field_text(self.schema.uid, &schema::uid(&doc.index, id)),
                    IndexRecordOption::Basic,
                );
                if partition.searcher().search(&query, &Count)? > 0 {
                    return Ok(false);
                }
            }
            DocId::Generated { seed, seq } => {
                let seqs = committed_seqs
                    .entry(partition.start_ms)
                    .or_insert_with(|| max_seq_by_seed(&partition.searcher()));
                if seqs.get(seed).is_some_and(|max| seq <= max) {
                    return Ok(false);
                }
            }
        }
        let mut tdoc = self.schema.document(
            &doc.index,
            &doc.id,
            doc.ts,
            typed,
            &doc.source,
            self.options.keyword_ignore_above,
        );
        if let DocId::Generated { seq, .. } = doc.id {
            self.schema.set_seq(&mut tdoc, seq);
        }
        self.add_to_partition(doc.ts, tdoc, now_ms)?;
        Ok(true)
    }
}

/// The highest committed sequence number of each generated-id seed.
fn max_seq_by_seed(searcher: &Searcher) -> HashMap<u64, u64> {
    let mut out: HashMap<u64, u64> = HashMap::new();
    for segment in searcher.segment_readers() {
        let fast = segment.fast_fields();
        let (Ok(Some(seeds)), Ok(Some(seqs))) = (
            fast.column_opt::<u64>(schema::ID_SEED),
            fast.column_opt::<u64>(schema::ID_SEQ),
        ) else {
            continue;
        };
        for doc in 0..segment.max_doc() {
            if let (Some(seed), Some(seq)) = (seeds.first(doc), seqs.first(doc)) {
                let max = out.entry(seed).or_insert(seq);
                *max = (*max).max(seq);
            }
        }
    }
    out
}

/// A document that passed typing, on its way to the WAL and the index.
struct Accepted {
    slot: usize,
    id: DocId,
    doc: LogDoc,
    typed: TypedDoc,
    ts: i64,
    source: Vec<u8>,
}

fn open_partition(
    dir: &Path,
    start_ms: i64,
    partition_ms: i64,
    schema: &LogSchema,
) -> Result<Partition, LogStoreError> {
    std::fs::create_dir_all(dir)?;
    let directory =
        tantivy::directory::MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
    let settings = IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor {
            compression_level: Some(6),
        }),
        docstore_blocksize: 512 * 1024,
        ..IndexSettings::default()
    };
    let index = Index::builder()
        .schema(schema.schema.clone())
        .settings(settings)
        .open_or_create(directory)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    Ok(Partition {
        start_ms,
        end_ms: start_ms.saturating_add(partition_ms),
        dir: dir.to_owned(),
        index,
        reader,
        writer: Mutex::new(None),
        dirty: AtomicBool::new(false),
        last_write_ms: AtomicI64::new(0),
    })
}

struct WalDoc {
    index: String,
    id: DocId,
    ts: i64,
    source: Vec<u8>,
}

/// A log record as forwarders read it from the WAL.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardDoc {
    pub index: String,
    /// The id clients see (generated ids included), so that a resend
    /// replaces rather than duplicates.
    pub id: String,
    pub timestamp_ns: i64,
    /// The `_source` JSON as stored.
    pub source: Vec<u8>,
}

/// The documents of one WAL record (for forwarders); `None` for other
/// records (index deletions) or one that does not decode.
pub fn decode_wal_docs(payload: &[u8]) -> Option<Vec<ForwardDoc>> {
    match decode_record(payload)? {
        WalRecord::Docs(docs) => Some(
            docs.into_iter()
                .map(|d| ForwardDoc {
                    id: d.id.render(),
                    index: d.index,
                    timestamp_ns: d.ts,
                    source: d.source,
                })
                .collect(),
        ),
        WalRecord::DeleteIndex(_) => None,
    }
}

enum WalRecord {
    Docs(Vec<WalDoc>),
    DeleteIndex(String),
}

fn decode_record(payload: &[u8]) -> Option<WalRecord> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        RECORD_DOCS => {
            let n = r.uvarint()? as usize;
            let seed = r.u64_le()?;
            let mut next_seq = r.u64_le()?;
            let mut docs = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                let index = r.str()?.to_owned();
                let flags = r.u8()?;
                let id = if flags & 2 != 0 {
                    next_seq += 1;
                    DocId::Generated {
                        seed,
                        seq: next_seq - 1,
                    }
                } else {
                    DocId::Explicit(r.str()?.to_owned())
                };
                let ts = r.varint()?;
                let len = r.uvarint()? as usize;
                let source = r.bytes(len)?.to_vec();
                docs.push(WalDoc {
                    index,
                    id,
                    ts,
                    source,
                });
            }
            Some(WalRecord::Docs(docs))
        }
        RECORD_DELETE_INDEX => Some(WalRecord::DeleteIndex(r.str()?.to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

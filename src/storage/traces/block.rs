//! Span blocks: immutable Arrow IPC files of spans sorted by trace id, in
//! record batches of at most [`BATCH_ROWS`] rows, zstd-compressed.
//!
//! `blocks/<name>/spans.arrow` columns: `trace_id` (16 bytes), `span_id`
//! (8), `parent_span_id` (8, null for roots), `service`, `name`, `kind`
//! (u8), `status` (u8), `start_ns`, `end_ns` (i64), `payload` (the rest of
//! the span, [`crate::model::span::codec`]). `meta.json` holds the time range
//! and the WAL checkpoint.
//!
//! What stays in memory per block is small and does not grow with its spans:
//! the first and last trace id of each record batch (32 bytes per 4,096
//! spans), a binary fuse filter of its distinct trace ids (about 9 bits a
//! trace, 0.4% false positives), and for each service the set of batches
//! holding its spans. A trace lookup asks the filter, then reads and
//! decompresses only the batches whose id range holds the trace; a search
//! by service reads only that service's batches.
//!
//! **Invariant:** a block directory appears under its final name only when
//! complete (written as `tmp-…`, synced, renamed), as for metric blocks.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, FixedSizeBinaryBuilder, StringBuilder};
use arrow_array::{
    Array, BinaryArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray, UInt8Array,
};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use roaring::RoaringBitmap;
use xorf::{BinaryFuse8, Filter};

use crate::model::span::{codec, Span, SpanId, TraceId};

pub const BATCH_ROWS: usize = 4096;
const SPANS_FILE: &str = "spans.arrow";
const META_FILE: &str = "meta.json";
const FORMAT_VERSION: u32 = 1;

pub const COL_TRACE_ID: usize = 0;
pub const COL_SPAN_ID: usize = 1;
pub const COL_PARENT: usize = 2;
pub const COL_SERVICE: usize = 3;
pub const COL_NAME: usize = 4;
pub const COL_KIND: usize = 5;
pub const COL_STATUS: usize = 6;
pub const COL_START: usize = 7;
pub const COL_END: usize = 8;
pub const COL_PAYLOAD: usize = 9;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("meta: {0}")]
    Meta(#[from] serde_json::Error),
    #[error("block {0}: {1}")]
    Invalid(String, String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockMeta {
    pub format: u32,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
    pub max_end_ns: i64,
    pub num_spans: u64,
    /// WAL segments numbered below this are fully contained in blocks.
    pub wal_checkpoint: u64,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("parent_span_id", DataType::FixedSizeBinary(8), true),
        Field::new("service", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("status", DataType::UInt8, false),
        Field::new("start_ns", DataType::Int64, false),
        Field::new("end_ns", DataType::Int64, false),
        Field::new("payload", DataType::Binary, false),
    ]))
}

/// A loaded block: its meta, where it lives, and the small in-memory index
/// described in the module documentation.
pub struct SpanBlock {
    pub name: String,
    pub dir: PathBuf,
    pub meta: BlockMeta,
    /// First and last trace id of each record batch (batches are sorted).
    batch_ranges: Vec<(TraceId, TraceId)>,
    /// The block's distinct trace ids; `None` only if the filter could not
    /// be built (every lookup then reads the batches by range).
    trace_filter: Option<BinaryFuse8>,
    /// The block's service names, and for each the batches holding it.
    services: Vec<(String, RoaringBitmap)>,
    pub disk_bytes: u64,
}

impl std::fmt::Debug for SpanBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBlock")
            .field("name", &self.name)
            .finish()
    }
}

/// Reads record batches of one block by index, with a fixed projection
/// (column numbers in the result follow the projection's order).
pub struct BatchReader {
    name: String,
    reader: FileReader<File>,
}

impl BatchReader {
    pub fn batch(&mut self, index: usize) -> Result<Columns, BlockError> {
        self.reader.set_index(index)?;
        let batch = self
            .reader
            .next()
            .ok_or_else(|| BlockError::Invalid(self.name.clone(), format!("no batch {index}")))??;
        Ok(Columns { batch })
    }
}

/// Write `spans` (any order) as a block under `blocks_dir`.
pub fn write_block(
    blocks_dir: &Path,
    spans: &mut [Span],
    wal_checkpoint: u64,
) -> Result<PathBuf, BlockError> {
    spans.sort_by_key(|s| (s.trace_id, s.start_ns));
    let mut meta = BlockMeta {
        format: FORMAT_VERSION,
        min_start_ns: i64::MAX,
        max_start_ns: i64::MIN,
        max_end_ns: i64::MIN,
        num_spans: spans.len() as u64,
        wal_checkpoint,
    };
    for span in spans.iter() {
        meta.min_start_ns = meta.min_start_ns.min(span.start_ns);
        meta.max_start_ns = meta.max_start_ns.max(span.start_ns);
        meta.max_end_ns = meta.max_end_ns.max(span.end_ns);
    }
    let name = crate::storage::unique_block_name(
        blocks_dir,
        meta.min_start_ns,
        meta.max_start_ns,
        wal_checkpoint,
        19,
    );
    let tmp = blocks_dir.join(format!("tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    {
        let file = File::create(tmp.join(SPANS_FILE))?;
        let options =
            IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD))?;
        let mut writer =
            FileWriter::try_new_with_options(BufWriter::new(file), &schema(), options)?;
        let mut payload = Vec::new();
        for chunk in spans.chunks(BATCH_ROWS) {
            let mut trace = FixedSizeBinaryBuilder::with_capacity(chunk.len(), 16);
            let mut span_id = FixedSizeBinaryBuilder::with_capacity(chunk.len(), 8);
            let mut parent = FixedSizeBinaryBuilder::with_capacity(chunk.len(), 8);
            let mut service = StringBuilder::new();
            let mut name = StringBuilder::new();
            let mut payloads = BinaryBuilder::new();
            for span in chunk {
                trace.append_value(span.trace_id)?;
                span_id.append_value(span.span_id)?;
                match span.parent_span_id {
                    Some(p) => parent.append_value(p)?,
                    None => parent.append_null(),
                }
                service.append_value(&span.service);
                name.append_value(&span.name);
                payload.clear();
                codec::put_payload(&mut payload, span);
                payloads.append_value(&payload);
            }
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(trace.finish()),
                    Arc::new(span_id.finish()),
                    Arc::new(parent.finish()),
                    Arc::new(service.finish()),
                    Arc::new(name.finish()),
                    Arc::new(UInt8Array::from_iter_values(chunk.iter().map(|s| s.kind))),
                    Arc::new(UInt8Array::from_iter_values(
                        chunk.iter().map(|s| s.status_code),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        chunk.iter().map(|s| s.start_ns),
                    )),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|s| s.end_ns))),
                    Arc::new(payloads.finish()),
                ],
            )?;
            writer.write(&batch)?;
        }
        writer.finish()?;
        let file = writer
            .into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()?;
    }
    let meta_file = File::create(tmp.join(META_FILE))?;
    serde_json::to_writer_pretty(&meta_file, &meta)?;
    meta_file.sync_all()?;
    File::open(&tmp)?.sync_all()?;
    let dest = blocks_dir.join(&name);
    if let Err(err) =
        crate::storage::faults::check("span_block.rename").and_then(|()| fs::rename(&tmp, &dest))
    {
        let _ = fs::remove_dir_all(&tmp);
        return Err(err.into());
    }
    File::open(blocks_dir)?.sync_all()?;
    Ok(dest)
}

/// The columns of one record batch, downcast.
pub struct Columns {
    pub batch: RecordBatch,
}

impl Columns {
    pub fn fixed(&self, i: usize) -> &FixedSizeBinaryArray {
        self.batch
            .column(i)
            .as_any()
            .downcast_ref()
            .expect("fixed-size binary column")
    }
    pub fn strings(&self, i: usize) -> &StringArray {
        self.batch
            .column(i)
            .as_any()
            .downcast_ref()
            .expect("utf8 column")
    }
    pub fn u8s(&self, i: usize) -> &UInt8Array {
        self.batch
            .column(i)
            .as_any()
            .downcast_ref()
            .expect("u8 column")
    }
    pub fn i64s(&self, i: usize) -> &Int64Array {
        self.batch
            .column(i)
            .as_any()
            .downcast_ref()
            .expect("i64 column")
    }
    pub fn binary(&self, i: usize) -> &BinaryArray {
        self.batch
            .column(i)
            .as_any()
            .downcast_ref()
            .expect("binary column")
    }

    /// The whole span at `row` (requires every column).
    pub fn span(&self, row: usize) -> Option<Span> {
        let id8 = |i: usize| -> Option<SpanId> { self.fixed(i).value(row).try_into().ok() };
        let parents = self.fixed(COL_PARENT);
        let mut span = Span {
            trace_id: self.fixed(COL_TRACE_ID).value(row).try_into().ok()?,
            span_id: id8(COL_SPAN_ID)?,
            parent_span_id: if parents.is_null(row) {
                None
            } else {
                Some(parents.value(row).try_into().ok()?)
            },
            trace_state: String::new(),
            flags: 0,
            name: self.strings(COL_NAME).value(row).to_owned(),
            kind: self.u8s(COL_KIND).value(row),
            start_ns: self.i64s(COL_START).value(row),
            end_ns: self.i64s(COL_END).value(row),
            status_code: self.u8s(COL_STATUS).value(row),
            status_message: String::new(),
            service: self.strings(COL_SERVICE).value(row).to_owned(),
            resource: Default::default(),
            scope_name: String::new(),
            scope_version: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
        };
        codec::get_payload(self.binary(COL_PAYLOAD).value(row), &mut span)?;
        Some(span)
    }
}

impl SpanBlock {
    pub fn open(dir: &Path) -> Result<SpanBlock, BlockError> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let meta: BlockMeta = serde_json::from_reader(File::open(dir.join(META_FILE))?)?;
        if meta.format != FORMAT_VERSION {
            return Err(BlockError::Invalid(
                name,
                format!("unknown format version {}", meta.format),
            ));
        }
        let mut batch_ranges = Vec::new();
        let mut keys: Vec<u64> = Vec::new();
        let mut services: Vec<(String, RoaringBitmap)> = Vec::new();
        let mut service_ids: std::collections::HashMap<String, usize> = Default::default();
        let mut spans = 0u64;
        let reader = FileReader::try_new(
            File::open(dir.join(SPANS_FILE))?,
            Some(vec![COL_TRACE_ID, COL_SERVICE]),
        )?;
        for (index, batch) in reader.enumerate() {
            let batch = batch?;
            let index = u32::try_from(index)
                .map_err(|_| BlockError::Invalid(name.clone(), "too many batches".into()))?;
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(|| BlockError::Invalid(name.clone(), "trace_id column".into()))?;
            let names = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| BlockError::Invalid(name.clone(), "service column".into()))?;
            let id_at = |row: usize| -> Result<TraceId, BlockError> {
                column.value(row).try_into().map_err(|_| {
                    BlockError::Invalid(name.clone(), "trace id is not 16 bytes".into())
                })
            };
            if column.is_empty() {
                return Err(BlockError::Invalid(name, "empty record batch".into()));
            }
            let (first, last) = (id_at(0)?, id_at(column.len() - 1)?);
            if first > last || batch_ranges.last().is_some_and(|&(_, prev)| prev > first) {
                return Err(BlockError::Invalid(name, "trace ids out of order".into()));
            }
            batch_ranges.push((first, last));
            let mut previous = None;
            for row in 0..column.len() {
                let trace = id_at(row)?;
                if previous != Some(trace) {
                    keys.push(filter_key(&trace));
                    previous = Some(trace);
                }
            }
            // By hash: a block may hold spans of many services.
            let mut last_service: Option<(&str, usize)> = None;
            for row in 0..names.len() {
                let service = names.value(row);
                let id = match last_service {
                    Some((s, id)) if s == service => id,
                    _ => match service_ids.get(service) {
                        Some(&id) => id,
                        None => {
                            services.push((service.to_owned(), RoaringBitmap::new()));
                            service_ids.insert(service.to_owned(), services.len() - 1);
                            services.len() - 1
                        }
                    },
                };
                services[id].1.insert(index);
                last_service = Some((service, id));
            }
            spans += column.len() as u64;
        }
        if spans != meta.num_spans {
            return Err(BlockError::Invalid(
                name,
                "span count differs from meta".into(),
            ));
        }
        // Ids repeat across batch boundaries, and two ids may share a key.
        keys.sort_unstable();
        keys.dedup();
        let trace_filter = BinaryFuse8::try_from(&keys).ok();
        if trace_filter.is_none() {
            tracing::warn!(block = %name, "no trace-id filter for span block; lookups read its batches");
        }
        let disk_bytes = fs::metadata(dir.join(SPANS_FILE)).map_or(0, |m| m.len());
        Ok(SpanBlock {
            name,
            dir: dir.to_owned(),
            meta,
            batch_ranges,
            trace_filter,
            services,
            disk_bytes,
        })
    }

    pub fn overlaps(&self, start_ns: i64, end_ns: i64) -> bool {
        self.meta.min_start_ns <= end_ns && self.meta.max_end_ns >= start_ns
    }

    /// Whether the block may hold spans of `trace` (no false negatives).
    pub fn may_hold(&self, trace: &TraceId) -> bool {
        self.trace_filter
            .as_ref()
            .is_none_or(|f| f.contains(&filter_key(trace)))
    }

    /// The record batches whose trace-id range holds `trace`.
    pub fn batches_of(&self, trace: &TraceId) -> std::ops::Range<usize> {
        let lo = self.batch_ranges.partition_point(|(_, last)| last < trace);
        let hi = self
            .batch_ranges
            .partition_point(|(first, _)| first <= trace);
        lo..hi.max(lo)
    }

    /// The batches holding spans of `service`, or `None` if it has none.
    /// How many record batches the block holds.
    pub fn num_batches(&self) -> usize {
        self.batch_ranges.len()
    }

    pub fn batches_of_service(&self, service: &str) -> Option<&RoaringBitmap> {
        self.services
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, batches)| batches)
    }

    /// Bytes of memory the block's in-memory index holds.
    pub fn index_bytes(&self) -> usize {
        self.batch_ranges.len() * 32
            + self.trace_filter.as_ref().map_or(0, |f| f.len())
            + self
                .services
                .iter()
                .map(|(s, b)| s.len() + b.serialized_size())
                .sum::<usize>()
    }

    /// A reader of this block's record batches with the given columns (all
    /// when `None`), for reading a few batches by index.
    pub fn reader(&self, projection: Option<Vec<usize>>) -> Result<BatchReader, BlockError> {
        Ok(BatchReader {
            name: self.name.clone(),
            reader: FileReader::try_new(File::open(self.dir.join(SPANS_FILE))?, projection)?,
        })
    }

    /// Visit every record batch in order with the projected columns (one
    /// file open and footer parse for the whole block).
    pub fn scan(
        &self,
        projection: Vec<usize>,
        mut visit: impl FnMut(usize, &Columns) -> Result<(), BlockError>,
    ) -> Result<(), BlockError> {
        let reader = FileReader::try_new(File::open(self.dir.join(SPANS_FILE))?, Some(projection))?;
        for (index, batch) in reader.enumerate() {
            visit(index, &Columns { batch: batch? })?;
        }
        Ok(())
    }

    /// Visit the record batches in `batches` (ascending) with the projected
    /// columns; the others are not read.
    pub fn scan_batches(
        &self,
        batches: impl IntoIterator<Item = usize>,
        projection: Vec<usize>,
        mut visit: impl FnMut(usize, &Columns) -> Result<(), BlockError>,
    ) -> Result<(), BlockError> {
        let mut reader = self.reader(Some(projection))?;
        for index in batches {
            visit(index, &reader.batch(index)?)?;
        }
        Ok(())
    }

    /// Every span of `trace` in this block.
    pub fn trace(&self, trace: &TraceId, out: &mut Vec<Span>) -> Result<(), BlockError> {
        if !self.may_hold(trace) {
            return Ok(());
        }
        self.scan_batches(
            self.batches_of(trace),
            (0..=COL_PAYLOAD).collect(),
            |_, columns| {
                let ids = columns.fixed(COL_TRACE_ID);
                // Rows are sorted by trace id within the batch.
                let rows = columns.batch.num_rows();
                let lo = partition(rows, |row| ids.value(row) < trace.as_slice());
                let hi = partition(rows, |row| ids.value(row) <= trace.as_slice());
                out.extend((lo..hi).filter_map(|row| columns.span(row)));
                Ok(())
            },
        )
    }
}

/// The first index in `0..len` for which `before` is false (`before` must
/// be true for a prefix).
fn partition(len: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A trace id folded to the filter's 64-bit key (the filter mixes it again).
fn filter_key(trace: &TraceId) -> u64 {
    let (a, b) = trace.split_at(8);
    let a = u64::from_le_bytes(a.try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(b.try_into().expect("8 bytes"));
    a ^ b.rotate_left(29).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Open every block under `dir`, removing leftovers of interrupted writes
/// and moving unreadable blocks aside.
pub fn open_all(dir: &Path) -> Result<Vec<SpanBlock>, BlockError> {
    fs::create_dir_all(dir)?;
    let mut blocks = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("tmp-") {
            fs::remove_dir_all(entry.path())?;
            continue;
        }
        if name.starts_with("corrupt-") || !entry.path().is_dir() {
            continue;
        }
        match SpanBlock::open(&entry.path()) {
            Ok(block) => blocks.push(block),
            // Out of file descriptors or memory: the block is fine; stop.
            Err(err) if crate::storage::is_transient(&err) => return Err(err),
            Err(err) => {
                let aside = dir.join(format!("corrupt-{name}"));
                tracing::error!(block = %name, error = %err, moved_to = %aside.display(),
                    "cannot open span block; moved aside");
                fs::rename(entry.path(), aside)?;
            }
        }
    }
    blocks.sort_by_key(|b| b.meta.min_start_ns);
    Ok(blocks)
}

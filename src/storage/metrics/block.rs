//! Immutable, time-partitioned blocks: our chunk encoding held in Arrow
//! columns, one Arrow IPC file per block.
//!
//! `blocks/<name>/chunks.arrow` has one row per series with columns
//! `series_id: u32` (sorted), `min_t: i64`, `max_t: i64`, `count: u32`,
//! `chunk: binary` (all of the series' samples in the block, encoded by
//! [`super::block_chunk`]); `meta.json` holds the block's time range and the WAL segment
//! from which the head must be replayed once this block exists.
//!
//! **Invariant:** a block directory appears under its final name only once
//! all of its files are written and synced (written to `tmp-…`, then renamed).

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, BinaryArray, Int64Array, RecordBatch, UInt32Array};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use super::block_chunk;
use crate::model::Sample;

const CHUNKS_FILE: &str = "chunks.arrow";
const META_FILE: &str = "meta.json";
/// Bumped on any incompatible change of the block layout. Version 3 lets a
/// series have several rows, in time order (compacted blocks cut each
/// series at the block duration, so that a short query decodes only the
/// rows it overlaps); version 2 blocks (one row per series) are read as is.
const FORMAT_VERSION: u32 = 3;
const OLDEST_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockMeta {
    pub format: u32,
    pub min_t: i64,
    pub max_t: i64,
    pub num_series: u64,
    pub num_samples: u64,
    /// WAL segments numbered below this are fully contained in blocks.
    pub wal_checkpoint: u64,
    /// The blocks this one was compacted from (deleted once it exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted_from: Vec<String>,
}

/// A loaded block. Columns stay in memory (they are the compressed form).
pub struct Block {
    pub name: String,
    pub dir: PathBuf,
    pub meta: BlockMeta,
    ids: UInt32Array,
    min_ts: Int64Array,
    max_ts: Int64Array,
    counts: UInt32Array,
    chunks: BinaryArray,
    pub series: RoaringBitmap,
    pub disk_bytes: u64,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("name", &self.name)
            .field("meta", &self.meta)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("block arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("block meta: {0}")]
    Meta(#[from] serde_json::Error),
    #[error("block {0}: {1}")]
    Invalid(String, String),
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt32, false),
        Field::new("min_t", DataType::Int64, false),
        Field::new("max_t", DataType::Int64, false),
        Field::new("count", DataType::UInt32, false),
        Field::new("chunk", DataType::Binary, false),
    ]))
}

/// One series of a block, already encoded: a head cut decodes one series
/// at a time and keeps only this (about 1.5 bytes per sample), never every
/// sample of the head at once.
#[derive(Debug, Clone)]
pub struct EncodedSeries {
    pub id: u32,
    pub min_t: i64,
    pub max_t: i64,
    pub count: u32,
    pub chunk: Vec<u8>,
}

impl EncodedSeries {
    /// `None` for no samples. Samples must be sorted by time.
    pub fn encode(id: u32, samples: &[Sample]) -> Option<EncodedSeries> {
        let (first, last) = (samples.first()?, samples.last()?);
        debug_assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
        Some(EncodedSeries {
            id,
            min_t: first.t,
            max_t: last.t,
            count: samples.len() as u32,
            chunk: block_chunk::encode(samples),
        })
    }
}

/// Write a block from `(series id, sorted samples)` pairs sorted by id.
/// Returns the final directory.
pub fn write_block(
    blocks_dir: &Path,
    series: &[(u32, Vec<Sample>)],
    wal_checkpoint: u64,
) -> Result<PathBuf, BlockError> {
    let encoded: Vec<EncodedSeries> = series
        .iter()
        .filter_map(|(id, samples)| EncodedSeries::encode(*id, samples))
        .collect();
    write_encoded_block(blocks_dir, &encoded, wal_checkpoint)
}

/// Write a block from encoded series sorted by id.
pub fn write_encoded_block(
    blocks_dir: &Path,
    series: &[EncodedSeries],
    wal_checkpoint: u64,
) -> Result<PathBuf, BlockError> {
    write_compacted_block(blocks_dir, series, wal_checkpoint, &[])
}

/// [`write_encoded_block`] for a block that replaces `sources`.
pub fn write_compacted_block(
    blocks_dir: &Path,
    series: &[EncodedSeries],
    wal_checkpoint: u64,
    sources: &[String],
) -> Result<PathBuf, BlockError> {
    let mut ids = Vec::with_capacity(series.len());
    let mut min_ts = Vec::with_capacity(series.len());
    let mut max_ts = Vec::with_capacity(series.len());
    let mut counts = Vec::with_capacity(series.len());
    let mut meta = BlockMeta {
        format: FORMAT_VERSION,
        min_t: i64::MAX,
        max_t: i64::MIN,
        num_series: 0,
        num_samples: 0,
        wal_checkpoint,
        compacted_from: sources.to_vec(),
    };
    for s in series {
        ids.push(s.id);
        min_ts.push(s.min_t);
        max_ts.push(s.max_t);
        counts.push(s.count);
        meta.min_t = meta.min_t.min(s.min_t);
        meta.max_t = meta.max_t.max(s.max_t);
        if ids.len() < 2 || ids[ids.len() - 2] != s.id {
            meta.num_series += 1;
        }
        meta.num_samples += u64::from(s.count);
    }
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(UInt32Array::from(ids)),
            Arc::new(Int64Array::from(min_ts)),
            Arc::new(Int64Array::from(max_ts)),
            Arc::new(UInt32Array::from(counts)),
            Arc::new(BinaryArray::from_iter_values(
                series.iter().map(|s| s.chunk.as_slice()),
            )),
        ],
    )?;
    let name =
        crate::storage::unique_block_name(blocks_dir, meta.min_t, meta.max_t, wal_checkpoint, 13);
    let tmp = blocks_dir.join(format!("tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let dest = blocks_dir.join(&name);
    let written = (|| -> Result<(), BlockError> {
        fs::create_dir_all(&tmp)?;
        {
            crate::storage::faults::check("block.write")?;
            let file = File::create(tmp.join(CHUNKS_FILE))?;
            let mut writer = FileWriter::try_new(BufWriter::new(file), &schema())?;
            writer.write(&batch)?;
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
        crate::storage::faults::check("block.rename")?;
        fs::rename(&tmp, &dest)?;
        File::open(blocks_dir)?.sync_all()?;
        Ok(())
    })();
    if let Err(err) = written {
        // Leave nothing half-written behind (start-up would remove it too).
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        return Err(err);
    }
    Ok(dest)
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let invalid = |what: &str| BlockError::Invalid(name.clone(), what.to_owned());
        crate::storage::faults::check("block.open")?;
        let meta: BlockMeta = serde_json::from_reader(File::open(dir.join(META_FILE))?)?;
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&meta.format) {
            return Err(invalid(&format!("unknown format version {}", meta.format)));
        }
        let batch = &map_batch(&dir.join(CHUNKS_FILE)).map_err(|e| invalid(&e))?;
        let column = |i: usize| batch.column(i).clone();
        let ids = column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| invalid("series_id is not u32"))?
            .clone();
        let min_ts = column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| invalid("min_t is not i64"))?
            .clone();
        let max_ts = column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| invalid("max_t is not i64"))?
            .clone();
        let counts = column(3)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| invalid("count is not u32"))?
            .clone();
        let chunks = column(4)
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(|| invalid("chunk is not binary"))?
            .clone();
        let sorted = ids.values().windows(2).enumerate().all(|(i, w)| {
            w[0] < w[1]
                || (meta.format >= 3 && w[0] == w[1] && max_ts.value(i) < min_ts.value(i + 1))
        });
        if !sorted {
            return Err(invalid("series rows are not sorted by id and time"));
        }
        let series: RoaringBitmap = ids.values().iter().copied().collect();
        let disk_bytes = dir_size(dir);
        Ok(Block {
            name,
            dir: dir.to_owned(),
            meta,
            ids,
            min_ts,
            max_ts,
            counts,
            chunks,
            series,
            disk_bytes,
        })
    }

    /// The rows of series `id` (in time order).
    fn rows(&self, id: u32) -> std::ops::Range<usize> {
        let ids = self.ids.values();
        ids.partition_point(|&x| x < id)..ids.partition_point(|&x| x <= id)
    }

    /// Time range of one series in this block.
    pub fn series_range(&self, id: u32) -> Option<(i64, i64)> {
        let rows = self.rows(id);
        if rows.is_empty() {
            return None;
        }
        Some((
            self.min_ts.value(rows.start),
            self.max_ts.value(rows.end - 1),
        ))
    }

    /// Append the samples of series `id` within `[mint, maxt]` to `out`,
    /// decoding only the rows that overlap it.
    pub fn samples(&self, id: u32, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        for row in self.rows(id) {
            if self.min_ts.value(row) > maxt || self.max_ts.value(row) < mint {
                continue;
            }
            let start = out.len();
            block_chunk::decode(self.chunks.value(row), self.counts.value(row), out);
            // Keep only [mint, maxt] of what was decoded (samples are sorted).
            let decoded = &out[start..];
            let lo = decoded.partition_point(|s| s.t < mint);
            let hi = decoded.partition_point(|s| s.t <= maxt);
            out.truncate(start + hi);
            out.drain(start..start + lo);
        }
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_t <= maxt && self.meta.max_t >= mint
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Map a block's Arrow IPC file and decode its one record batch without
/// copying: the columns point into the mapping, so a block costs page cache,
/// not heap, and only the pages a query touches are read.
fn map_batch(path: &Path) -> Result<RecordBatch, String> {
    let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    // SAFETY: block files are never modified after they are renamed into place
    // (written as `tmp-…`, fsync'd, renamed); retention only unlinks them, which
    // leaves an existing mapping valid.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("mmap: {e}"))?;
    let buffer = arrow_buffer::Buffer::from(bytes::Bytes::from_owner(mmap));
    let len = buffer.len();
    if len < 10 {
        return Err("file too short for an Arrow IPC footer".into());
    }
    let trailer: [u8; 10] = buffer[len - 10..].try_into().expect("10 bytes");
    let footer_len = arrow_ipc::reader::read_footer_length(trailer).map_err(|e| e.to_string())?;
    let footer_start = (len - 10)
        .checked_sub(footer_len)
        .ok_or("footer length past the start of the file")?;
    let footer = arrow_ipc::root_as_footer(&buffer[footer_start..len - 10])
        .map_err(|e| format!("footer: {e}"))?;
    let schema = arrow_ipc::convert::fb_to_schema(footer.schema().ok_or("footer has no schema")?);
    let decoder = arrow_ipc::reader::FileDecoder::new(Arc::new(schema), footer.version());
    let blocks = footer
        .recordBatches()
        .ok_or("footer lists no record batches")?;
    if blocks.len() != 1 {
        return Err(format!("expected one record batch, found {}", blocks.len()));
    }
    let block = blocks.get(0);
    let offset = usize::try_from(block.offset()).map_err(|_| "negative batch offset")?;
    let block_len = block.bodyLength() as usize + block.metaDataLength() as usize;
    if offset
        .checked_add(block_len)
        .is_none_or(|end| end > footer_start)
    {
        return Err("record batch past the end of the file".into());
    }
    let data = buffer.slice_with_length(offset, block_len);
    decoder
        .read_record_batch(block, &data)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "empty record batch".to_owned())
}

/// Open every block under `blocks_dir`, removing leftovers of interrupted
/// writes. A block that cannot be read is moved aside to `corrupt-<name>`
/// with an error log: its data is lost either way, and the rest of the store
/// must still start.
pub fn open_all(blocks_dir: &Path) -> Result<Vec<Block>, BlockError> {
    fs::create_dir_all(blocks_dir)?;
    let mut blocks = Vec::new();
    for entry in fs::read_dir(blocks_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("tmp-") {
            tracing::warn!(block = %name, "removing incomplete block from an interrupted write");
            fs::remove_dir_all(entry.path())?;
            continue;
        }
        if name.starts_with("corrupt-") || !entry.file_type()?.is_dir() {
            continue;
        }
        match Block::open(&entry.path()) {
            Ok(block) => blocks.push(block),
            // Out of file descriptors or memory: the block is fine; stop.
            Err(err) if crate::storage::is_transient(&err) => return Err(err),
            Err(err) => {
                tracing::error!(block = %name, error = %err, "unreadable block moved aside");
                fs::rename(entry.path(), blocks_dir.join(format!("corrupt-{name}")))?;
            }
        }
    }
    // A compaction that crashed after writing its block but before deleting
    // the sources: the complete block wins.
    let replaced: std::collections::HashSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta.compacted_from.iter().cloned())
        .collect();
    if !replaced.is_empty() {
        let (gone, kept): (Vec<Block>, Vec<Block>) =
            blocks.into_iter().partition(|b| replaced.contains(&b.name));
        for block in gone {
            tracing::warn!(block = %block.name, "removing a block an interrupted compaction already merged");
            fs::remove_dir_all(&block.dir)?;
        }
        blocks = kept;
    }
    blocks.sort_by_key(|b| (b.meta.min_t, b.meta.max_t));
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<(u32, Vec<Sample>)> = (0..50u32)
            .map(|id| {
                (
                    id * 3,
                    (0..100)
                        .map(|i| Sample {
                            t: 1000 + i * 15_000,
                            v: f64::from(id) + i as f64,
                        })
                        .collect(),
                )
            })
            .collect();
        let path = write_block(dir.path(), &series, 7).unwrap();
        let blocks = open_all(dir.path()).unwrap();
        assert_eq!(blocks.len(), 1);
        let block = &blocks[0];
        assert_eq!(block.dir, path);
        assert_eq!(block.meta.num_samples, 5000);
        assert_eq!(block.meta.wal_checkpoint, 7);
        assert!(block.series.contains(147));
        let mut out = Vec::new();
        block.samples(147, 1000 + 15_000, 1000 + 3 * 15_000, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].v, 50.0);
        assert_eq!(block.series_range(3), Some((1000, 1000 + 99 * 15_000)));
        let mut none = Vec::new();
        block.samples(4, 0, i64::MAX, &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn a_truncated_block_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let series = vec![(1u32, vec![Sample { t: 1, v: 1.0 }])];
        let good = write_block(dir.path(), &series, 1).unwrap();
        let bad = write_block(
            dir.path(),
            &[(
                2u32,
                vec![Sample {
                    t: 7_200_001,
                    v: 2.0,
                }],
            )],
            2,
        )
        .unwrap();
        let file = bad.join(CHUNKS_FILE);
        let len = fs::metadata(&file).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let blocks = open_all(dir.path()).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].dir, good);
        let name = bad.file_name().unwrap().to_string_lossy().into_owned();
        assert!(dir.path().join(format!("corrupt-{name}")).exists());
    }
}

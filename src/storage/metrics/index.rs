//! The series index: series id → labels and `name=value` → postings (roaring
//! bitmaps of series ids), in memory for queries and persisted in sled.
//!
//! sled trees: `symbols` (symbol id u32 BE → string: every label name and
//! value is stored once), `series` (id u32 BE → varint symbol ids, name then
//! value per label), `postings` (`name symbol BE ++ value symbol BE` →
//! serialized bitmap, written in batches at checkpoints), `metadata` (metric
//! family → encoded metadata) and `meta` (bookkeeping, e.g. `postings_upto`:
//! series ids below it are in the persisted postings). Symbols keep the index
//! small: label names and values repeat across series, and sled roughly
//! doubles whatever it stores.
//!
//! **Invariant:** a series' labels reach sled before its id is handed out to
//! a query; after a crash, WAL replay re-inserts any that sled had not flushed.

use std::collections::HashMap;
use std::path::Path;

use parking_lot::Mutex;

use roaring::RoaringBitmap;

use crate::model::{Labels, MetricMetadata, MetricType};
use crate::storage::codec::{put_str, put_uvarint, Reader};

const POSTINGS_UPTO: &[u8] = b"postings_upto";
/// sled's page cache; the index is small next to the head, and sled's
/// default (1 GiB) would dominate Oxeye's memory.
const SLED_CACHE_BYTES: u64 = 64 << 20;
/// sled allocates its log in segments of this size; its default (512 KiB)
/// leaves a small index mostly empty space on disk.
const SLED_SEGMENT_BYTES: usize = 64 << 10;

/// `name → value → series ids`.
#[derive(Debug, Default)]
pub struct MemPostings {
    by_name: HashMap<String, HashMap<String, RoaringBitmap>>,
    all: RoaringBitmap,
}

impl MemPostings {
    pub fn add(&mut self, id: u32, labels: &Labels) {
        self.all.insert(id);
        for label in labels.iter() {
            self.by_name
                .entry(label.name.to_owned())
                .or_default()
                .entry(label.value.to_owned())
                .or_default()
                .insert(id);
        }
    }

    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    pub fn get(&self, name: &str, value: &str) -> Option<&RoaringBitmap> {
        self.by_name.get(name)?.get(value)
    }

    /// Values of one label name with their postings.
    pub fn values(&self, name: &str) -> impl Iterator<Item = (&str, &RoaringBitmap)> {
        self.by_name
            .get(name)
            .into_iter()
            .flat_map(|values| values.iter().map(|(v, p)| (v.as_str(), p)))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Forget `id`; returns the `(name, value)` pairs left without series.
    pub fn remove(&mut self, id: u32, labels: &Labels) -> Vec<(String, String)> {
        self.all.remove(id);
        let mut emptied = Vec::new();
        for label in labels.iter() {
            let Some(values) = self.by_name.get_mut(label.name) else {
                continue;
            };
            if let Some(bitmap) = values.get_mut(label.value) {
                bitmap.remove(id);
                if bitmap.is_empty() {
                    values.remove(label.value);
                    emptied.push((label.name.to_owned(), label.value.to_owned()));
                }
            }
            if values.is_empty() {
                self.by_name.remove(label.name);
            }
        }
        emptied
    }

    fn insert_bitmap(&mut self, name: &str, value: &str, bitmap: RoaringBitmap) {
        self.all |= &bitmap;
        self.by_name
            .entry(name.to_owned())
            .or_default()
            .insert(value.to_owned(), bitmap);
    }
}

pub struct SledIndex {
    db: sled::Db,
    symbols: sled::Tree,
    /// Every symbol written so far, to its id.
    symbol_ids: Mutex<HashMap<String, u32>>,
    series: sled::Tree,
    postings: sled::Tree,
    metadata: sled::Tree,
    meta: sled::Tree,
}

/// What the index holds at start-up.
pub struct LoadedIndex {
    /// Labels by series id; `None` for ids never written (a gap after a crash).
    pub series: Vec<Option<Labels>>,
    pub postings: MemPostings,
    pub metadata: Vec<MetricMetadata>,
}

impl SledIndex {
    pub fn open(dir: &Path) -> sled::Result<SledIndex> {
        // sled releases its file lock from a background thread after the
        // previous handle is dropped (a store reopened in the same process,
        // as tests and restarts-in-place do): wait for it, briefly.
        let mut attempts = 0;
        let db = loop {
            match Self::open_db(dir) {
                Err(sled::Error::Io(err))
                    if err.to_string().contains("could not acquire lock") && attempts < 100 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        Self::with_db(db)
    }

    fn open_db(dir: &Path) -> sled::Result<sled::Db> {
        sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .mode(sled::Mode::LowSpace)
            .segment_size(SLED_SEGMENT_BYTES)
            .open()
    }

    fn with_db(db: sled::Db) -> sled::Result<SledIndex> {
        let symbols = db.open_tree("symbols")?;
        let mut symbol_ids = HashMap::new();
        for entry in symbols.iter() {
            let (key, value) = entry?;
            if let (Some(id), Ok(text)) = (key_to_id(&key), std::str::from_utf8(&value)) {
                symbol_ids.insert(text.to_owned(), id);
            }
        }
        Ok(SledIndex {
            symbols,
            symbol_ids: Mutex::new(symbol_ids),
            series: db.open_tree("series")?,
            postings: db.open_tree("postings")?,
            metadata: db.open_tree("metadata")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    pub fn load(&self) -> sled::Result<LoadedIndex> {
        let mut by_id: Vec<Option<String>> = Vec::new();
        for (text, &id) in self.symbol_ids.lock().iter() {
            let index = id as usize;
            if by_id.len() <= index {
                by_id.resize(index + 1, None);
            }
            by_id[index] = Some(text.clone());
        }
        let mut series: Vec<Option<Labels>> = Vec::new();
        for entry in self.series.iter() {
            let (key, value) = entry?;
            let Some(id) = key_to_id(&key) else { continue };
            let Some(labels) = decode_series(&value, &by_id) else {
                tracing::warn!(series = id, "skipping undecodable series in index");
                continue;
            };
            let index = id as usize;
            if series.len() <= index {
                series.resize(index + 1, None);
            }
            series[index] = Some(labels);
        }
        let upto = self
            .meta
            .get(POSTINGS_UPTO)?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
            .unwrap_or(0);
        let mut postings = MemPostings::default();
        for entry in self.postings.iter() {
            let (key, value) = entry?;
            let symbol = |bytes: &[u8]| {
                key_to_id(bytes)
                    .and_then(|id| by_id.get(id as usize))
                    .and_then(Option::as_deref)
            };
            let (Some(name), Some(value_text)) = (
                symbol(&key[..4.min(key.len())]),
                symbol(key.get(4..).unwrap_or_default()),
            ) else {
                continue;
            };
            match RoaringBitmap::deserialize_from(&value[..]) {
                Ok(bitmap) => postings.insert_bitmap(name, value_text, bitmap),
                Err(err) => {
                    tracing::warn!(error = %err, "postings unreadable, rebuilding from series");
                    postings = MemPostings::default();
                    break;
                }
            }
        }
        // Series created after the last postings checkpoint (or all of them
        // if the persisted postings were unreadable).
        let from = if postings.all.is_empty() { 0 } else { upto };
        for (id, labels) in series.iter().enumerate().skip(from as usize) {
            if let Some(labels) = labels {
                postings.add(id as u32, labels);
            }
        }
        let mut metadata = Vec::new();
        for entry in self.metadata.iter() {
            let (_, value) = entry?;
            if let Some(m) = decode_metadata(&value) {
                metadata.push(m);
            }
        }
        Ok(LoadedIndex {
            series,
            postings,
            metadata,
        })
    }

    pub fn insert_series(&self, id: u32, labels: &Labels) -> sled::Result<()> {
        let mut value = Vec::with_capacity(32);
        for label in labels.iter() {
            put_uvarint(&mut value, u64::from(self.symbol(label.name)?));
            put_uvarint(&mut value, u64::from(self.symbol(label.value)?));
        }
        self.series.insert(id.to_be_bytes(), value)?;
        Ok(())
    }

    /// The id of a symbol, written to sled the first time it is seen.
    fn symbol(&self, text: &str) -> sled::Result<u32> {
        let mut ids = self.symbol_ids.lock();
        if let Some(&id) = ids.get(text) {
            return Ok(id);
        }
        let id = u32::try_from(ids.len()).expect("fewer than 2^32 symbols");
        self.symbols.insert(id.to_be_bytes(), text.as_bytes())?;
        ids.insert(text.to_owned(), id);
        Ok(id)
    }

    pub fn insert_metadata(&self, metadata: &MetricMetadata) -> sled::Result<()> {
        self.metadata
            .insert(metadata.metric_family.as_bytes(), encode_metadata(metadata))?;
        Ok(())
    }

    /// Persist postings for every series below `upto` and record the checkpoint.
    pub fn checkpoint_postings(&self, postings: &MemPostings, upto: u32) -> sled::Result<()> {
        let mut batch = sled::Batch::default();
        for (name, values) in &postings.by_name {
            for (value, bitmap) in values {
                let mut key = Vec::with_capacity(8);
                key.extend_from_slice(&self.symbol(name)?.to_be_bytes());
                key.extend_from_slice(&self.symbol(value)?.to_be_bytes());
                let mut bytes = Vec::with_capacity(bitmap.serialized_size());
                bitmap
                    .serialize_into(&mut bytes)
                    .expect("writing to a Vec cannot fail");
                batch.insert(key, bytes);
            }
        }
        self.postings.apply_batch(batch)?;
        self.meta.insert(POSTINGS_UPTO, &upto.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Drop series (and postings keys left empty) whose data retention
    /// removed, then checkpoint the remaining postings.
    pub fn remove_series(
        &self,
        ids: &[u32],
        emptied: &[(String, String)],
        postings: &MemPostings,
        upto: u32,
    ) -> sled::Result<()> {
        let mut series = sled::Batch::default();
        for id in ids {
            series.remove(&id.to_be_bytes());
        }
        self.series.apply_batch(series)?;
        let mut keys = sled::Batch::default();
        for (name, value) in emptied {
            let mut key = Vec::with_capacity(8);
            key.extend_from_slice(&self.symbol(name)?.to_be_bytes());
            key.extend_from_slice(&self.symbol(value)?.to_be_bytes());
            keys.remove(key);
        }
        self.postings.apply_batch(keys)?;
        self.checkpoint_postings(postings, upto)
    }

    pub fn flush(&self) -> sled::Result<()> {
        self.db.flush()?;
        Ok(())
    }

    pub fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

fn decode_series(bytes: &[u8], symbols: &[Option<String>]) -> Option<Labels> {
    let mut reader = Reader::new(bytes);
    let mut pairs = Vec::new();
    while !reader.is_empty() {
        let name = symbols.get(reader.uvarint()? as usize)?.as_deref()?;
        let value = symbols.get(reader.uvarint()? as usize)?.as_deref()?;
        pairs.push((name, value));
    }
    Some(Labels::from_pairs(pairs))
}

fn key_to_id(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.try_into().ok()?))
}

pub fn encode_metadata(m: &MetricMetadata) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, &m.metric_family);
    put_uvarint(&mut out, m.metric_type.to_remote_write());
    put_str(&mut out, &m.help);
    put_str(&mut out, &m.unit);
    out
}

pub fn decode_metadata(bytes: &[u8]) -> Option<MetricMetadata> {
    let mut reader = Reader::new(bytes);
    Some(MetricMetadata {
        metric_family: reader.str()?.to_owned(),
        metric_type: MetricType::from_remote_write(reader.uvarint()?),
        help: reader.str()?.to_owned(),
        unit: reader.str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_postings_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        let c = Labels::from_pairs([("__name__", "down"), ("job", "b")]);
        {
            let index = SledIndex::open(dir.path()).unwrap();
            let mut postings = MemPostings::default();
            for (id, labels) in [&a, &b].into_iter().enumerate() {
                index.insert_series(id as u32, labels).unwrap();
                postings.add(id as u32, labels);
            }
            index.checkpoint_postings(&postings, 2).unwrap();
            // Written after the checkpoint: its postings come from its labels.
            index.insert_series(3, &c).unwrap();
            index
                .insert_metadata(&MetricMetadata {
                    metric_family: "up".into(),
                    metric_type: MetricType::Gauge,
                    help: "is it up".into(),
                    unit: String::new(),
                })
                .unwrap();
            index.flush().unwrap();
        }
        let index = SledIndex::open(dir.path()).unwrap();
        let loaded = index.load().unwrap();
        assert_eq!(loaded.series.len(), 4);
        assert_eq!(loaded.series[1].as_ref(), Some(&b));
        assert!(loaded.series[2].is_none());
        let job_b = loaded.postings.get("job", "b").unwrap();
        assert_eq!(job_b.iter().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(loaded.metadata[0].help, "is it up");
    }
}

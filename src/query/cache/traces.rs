//! Trace searches over the past from the cache: the trace ids a search
//! found, for searches whose whole range is older than
//! `now − cache.max_freshness`. A search matches spans that start inside
//! its range, so only spans starting at or before its end — written late —
//! can change what it finds; the traces themselves are read fresh every
//! time. Searches reaching into the fresh part are run as they are (the
//! newest traces first and a limit make a split search inexact).

use xxhash_rust::xxh3::Xxh3;

use crate::model::span::TraceId;
use crate::storage::traces::{TraceQuery, TraceStore, TraceStoreError};

use super::ResultsCache;

impl ResultsCache {
    /// [`TraceStore::find_traces`], from the cache when the range is past.
    pub fn find_traces(
        &self,
        store: &TraceStore,
        query: &TraceQuery,
        now_ms: i64,
    ) -> Result<Vec<TraceId>, TraceStoreError> {
        let end_ms = query.end_ns.div_euclid(1_000_000);
        if end_ms >= now_ms.saturating_sub(self.max_freshness_ms) {
            return store.find_traces(query);
        }
        let mut h = Xxh3::new();
        h.update(&[super::KEY_VERSION]);
        h.update(format!("{query:?}").as_bytes());
        let key = format!("{}traces:{:032x}", self.prefix, h.digest128());
        let checked_ns = crate::now_ns();
        let found = self
            .backend
            .get(std::slice::from_ref(&key))
            .pop()
            .flatten()
            .and_then(|bytes| {
                let ids = self
                    .unpack(&bytes, self.max_entry_bytes)
                    .and_then(|raw| decode(&raw));
                if ids.is_none() {
                    self.metrics.error(self.backend.name(), "decode");
                }
                ids
            })
            .filter(|(computed_ns, _)| {
                store
                    .late
                    .oldest_since(*computed_ns)
                    .is_none_or(|t| t > end_ms)
            });
        if let Some((_, ids)) = found {
            self.metrics.lookup(self.backend.name(), "traces", "hit");
            return Ok(ids);
        }
        self.metrics.lookup(self.backend.name(), "traces", "miss");
        let ids = store.find_traces(query)?;
        if let Some(bytes) = self.pack(encode(checked_ns, &ids)) {
            self.backend.put(vec![(key, bytes)]);
        }
        Ok(ids)
    }
}

fn encode(computed_ns: i64, ids: &[TraceId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + ids.len() * 16);
    out.extend_from_slice(&computed_ns.to_le_bytes());
    for id in ids {
        out.extend_from_slice(id);
    }
    out
}

fn decode(raw: &[u8]) -> Option<(i64, Vec<TraceId>)> {
    let (computed, rest) = raw.split_first_chunk::<8>()?;
    if rest.len() % 16 != 0 {
        return None;
    }
    let ids = rest
        .chunks_exact(16)
        .map(|c| c.try_into().ok())
        .collect::<Option<Vec<TraceId>>>()?;
    Some((i64::from_le_bytes(*computed), ids))
}

#[cfg(test)]
mod tests {
    #[test]
    fn codec() {
        let ids = vec![[1u8; 16], [2u8; 16]];
        let raw = super::encode(42, &ids);
        assert_eq!(super::decode(&raw), Some((42, ids)));
        assert_eq!(super::decode(&raw[..raw.len() - 1]), None);
        assert_eq!(super::decode(&raw[..7]), None);
    }
}

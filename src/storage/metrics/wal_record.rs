//! The metrics store's WAL records. Payload byte 0 is the record kind.
//!
//! - `Series`: `n × (id: uvarint, labels)`; always before the samples that use the ids.
//! - `Samples`: `n × (id: uvarint, t: zigzag delta from the previous t, v: f64 LE)`.
//! - `Metadata`: one encoded [`MetricMetadata`].
//! - `Exemplars`: `n × (id: uvarint, t: zigzag, v: f64 LE, labels)`.

use crate::model::{Exemplar, Labels, MetricMetadata, Sample};
use crate::storage::codec::{put_uvarint, put_varint, Reader};

use super::index::{decode_metadata, encode_metadata};

const KIND_SERIES: u8 = 1;
const KIND_SAMPLES: u8 = 2;
const KIND_METADATA: u8 = 3;
const KIND_EXEMPLARS: u8 = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series(Vec<(u32, Labels)>),
    Samples(Vec<(u32, Sample)>),
    Metadata(MetricMetadata),
    Exemplars(Vec<(u32, Exemplar)>),
}

/// Builds the records of one append in reusable buffers.
#[derive(Debug, Default)]
pub struct RecordBuilder {
    pub series: Vec<u8>,
    pub samples: Vec<u8>,
    pub exemplars: Vec<u8>,
    series_count: usize,
    sample_count: usize,
    exemplar_count: usize,
    last_t: i64,
}

impl RecordBuilder {
    pub fn clear(&mut self) {
        self.series.clear();
        self.samples.clear();
        self.exemplars.clear();
        self.series_count = 0;
        self.sample_count = 0;
        self.exemplar_count = 0;
        self.last_t = 0;
    }

    pub fn add_series(&mut self, id: u32, labels: &Labels) {
        if self.series.is_empty() {
            self.series.push(KIND_SERIES);
        }
        put_uvarint(&mut self.series, u64::from(id));
        labels.encode(&mut self.series);
        self.series_count += 1;
    }

    pub fn add_sample(&mut self, id: u32, t: i64, v: f64) {
        if self.samples.is_empty() {
            self.samples.push(KIND_SAMPLES);
        }
        put_uvarint(&mut self.samples, u64::from(id));
        put_varint(&mut self.samples, t.wrapping_sub(self.last_t));
        self.samples.extend_from_slice(&v.to_bits().to_le_bytes());
        self.last_t = t;
        self.sample_count += 1;
    }

    pub fn add_exemplar(&mut self, id: u32, exemplar: &Exemplar) {
        if self.exemplars.is_empty() {
            self.exemplars.push(KIND_EXEMPLARS);
        }
        put_uvarint(&mut self.exemplars, u64::from(id));
        put_varint(&mut self.exemplars, exemplar.t);
        self.exemplars
            .extend_from_slice(&exemplar.v.to_bits().to_le_bytes());
        exemplar.labels.encode(&mut self.exemplars);
        self.exemplar_count += 1;
    }

    pub fn sample_count(&self) -> usize {
        self.sample_count
    }

    /// The non-empty records, in the order they must be written.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        [&self.series, &self.samples, &self.exemplars]
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(Vec::as_slice)
    }
}

pub fn encode_metadata_record(metadata: &MetricMetadata) -> Vec<u8> {
    let mut out = vec![KIND_METADATA];
    out.extend_from_slice(&encode_metadata(metadata));
    out
}

/// Decode a record; `None` for an unknown kind or a malformed payload
/// (the WAL checksum makes the latter a bug, not disk damage).
pub fn decode(payload: &[u8]) -> Option<Record> {
    let (&kind, body) = payload.split_first()?;
    let mut reader = Reader::new(body);
    match kind {
        KIND_SERIES => {
            let mut out = Vec::new();
            while !reader.is_empty() {
                let id = u32::try_from(reader.uvarint()?).ok()?;
                out.push((id, Labels::decode(&mut reader)?));
            }
            Some(Record::Series(out))
        }
        KIND_SAMPLES => {
            let mut out = Vec::new();
            let mut t = 0i64;
            while !reader.is_empty() {
                let id = u32::try_from(reader.uvarint()?).ok()?;
                t = t.wrapping_add(reader.varint()?);
                let v = reader.f64_le()?;
                out.push((id, Sample { t, v }));
            }
            Some(Record::Samples(out))
        }
        KIND_METADATA => decode_metadata(body).map(Record::Metadata),
        KIND_EXEMPLARS => {
            let mut out = Vec::new();
            while !reader.is_empty() {
                let id = u32::try_from(reader.uvarint()?).ok()?;
                let t = reader.varint()?;
                let v = reader.f64_le()?;
                let labels = Labels::decode(&mut reader)?;
                out.push((id, Exemplar { labels, t, v }));
            }
            Some(Record::Exemplars(out))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut builder = RecordBuilder::default();
        let labels = Labels::from_pairs([("__name__", "x")]);
        builder.add_series(5, &labels);
        builder.add_sample(5, 1000, 1.5);
        builder.add_sample(5, 900, f64::NAN);
        let exemplar = Exemplar {
            labels: Labels::from_pairs([("trace_id", "abc")]),
            t: 1000,
            v: 2.0,
        };
        builder.add_exemplar(5, &exemplar);
        let records: Vec<Record> = builder.records().map(|r| decode(r).unwrap()).collect();
        assert_eq!(records[0], Record::Series(vec![(5, labels)]));
        match &records[1] {
            Record::Samples(samples) => {
                assert_eq!(samples.len(), 2);
                assert_eq!(samples[1].1.t, 900);
                assert!(samples[1].1.v.is_nan());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(records[2], Record::Exemplars(vec![(5, exemplar)]));
        assert!(decode(&[99]).is_none());
    }
}

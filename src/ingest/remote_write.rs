//! Prometheus remote_write 1.0: a zero-copy walk of the snappy-decompressed
//! `prometheus.WriteRequest`.
//!
//! Why not `prost`-derived types: decoding into them allocates a `String` per
//! label name and value, which costs more than everything else ingest does
//! (../shared/PERFORMANCE.md: 0.35–0.55M vs ~3.6M samples per CPU-second).
//! Here labels stay `&str` views into the request buffer, and a series is
//! looked up by the hash of those views before anything is allocated.

use std::ops::Range;

use crate::ingest::{IngestError, LabelCheck};
use crate::model::{
    append_key, label_hash, Exemplar, LabelRef, Labels, MetricMetadata, MetricType, Sample,
};
use crate::storage::codec::Reader;
use crate::storage::metrics::SeriesWrite;

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;

/// One decoded TimeSeries: ranges into [`DecodedWrite`]'s flat vectors.
#[derive(Debug, Clone)]
struct DecodedSeries {
    labels: Range<usize>,
    key: Range<usize>,
    samples: Range<usize>,
    exemplars: Range<usize>,
    hash: u64,
}

/// A decoded request whose labels borrow from the decompressed body.
#[derive(Debug, Default)]
pub struct DecodedWrite<'a> {
    labels: Vec<LabelRef<'a>>,
    /// Canonical keys of all series, back to back.
    keys: Vec<u8>,
    samples: Vec<Sample>,
    exemplars: Vec<Exemplar>,
    series: Vec<DecodedSeries>,
    pub metadata: Vec<MetricMetadata>,
    /// Series dropped before storage, with why (invalid labels, native histograms).
    pub invalid: Vec<String>,
    pub invalid_samples: u64,
}

impl<'a> DecodedWrite<'a> {
    fn reject(&mut self, label_start: usize, problem: String, samples: usize) {
        self.invalid_samples += samples as u64;
        if self.invalid.len() < 10 {
            self.invalid.push(format!(
                "series {}: {problem}",
                Labels::from_refs(&self.labels[label_start..])
            ));
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// The valid series, ready for [`crate::storage::metrics::MetricsStore::append`].
    pub fn writes(&self) -> Vec<SeriesWrite<'_>> {
        self.series
            .iter()
            .map(|s| SeriesWrite {
                hash: s.hash,
                key: &self.keys[s.key.clone()],
                labels: &self.labels[s.labels.clone()],
                samples: &self.samples[s.samples.clone()],
                exemplars: &self.exemplars[s.exemplars.clone()],
            })
            .collect()
    }
}

fn malformed(what: &str) -> IngestError {
    IngestError::BadRequest(format!("malformed remote write protobuf: {what}"))
}

fn read_key(reader: &mut Reader<'_>) -> Result<(u64, u64), IngestError> {
    let key = reader
        .uvarint()
        .ok_or_else(|| malformed("truncated field key"))?;
    Ok((key >> 3, key & 7))
}

fn read_len<'a>(reader: &mut Reader<'a>) -> Result<&'a [u8], IngestError> {
    let len = reader
        .uvarint()
        .ok_or_else(|| malformed("truncated length"))?;
    let len = usize::try_from(len).map_err(|_| malformed("length overflows"))?;
    reader
        .bytes(len)
        .ok_or_else(|| malformed("length past end of message"))
}

fn skip(reader: &mut Reader<'_>, wire: u64) -> Result<(), IngestError> {
    match wire {
        WIRE_VARINT => reader.uvarint().map(drop),
        WIRE_FIXED64 => reader.bytes(8).map(drop),
        WIRE_LEN => return read_len(reader).map(drop),
        WIRE_FIXED32 => reader.bytes(4).map(drop),
        _ => None,
    }
    .ok_or_else(|| malformed(&format!("unsupported wire type {wire}")))
}

fn read_str<'a>(reader: &mut Reader<'a>) -> Result<&'a str, IngestError> {
    std::str::from_utf8(read_len(reader)?).map_err(|_| malformed("string is not valid UTF-8"))
}

fn read_f64(reader: &mut Reader<'_>, wire: u64) -> Result<f64, IngestError> {
    if wire != WIRE_FIXED64 {
        return Err(malformed("double field with wrong wire type"));
    }
    reader.f64_le().ok_or_else(|| malformed("truncated double"))
}

fn read_i64(reader: &mut Reader<'_>, wire: u64) -> Result<i64, IngestError> {
    if wire != WIRE_VARINT {
        return Err(malformed("int64 field with wrong wire type"));
    }
    reader
        .uvarint()
        .map(|v| v as i64)
        .ok_or_else(|| malformed("truncated varint"))
}

fn decode_label<'a>(bytes: &'a [u8]) -> Result<LabelRef<'a>, IngestError> {
    let mut reader = Reader::new(bytes);
    let mut label = LabelRef {
        name: "",
        value: "",
    };
    while !reader.is_empty() {
        match read_key(&mut reader)? {
            (1, WIRE_LEN) => label.name = read_str(&mut reader)?,
            (2, WIRE_LEN) => label.value = read_str(&mut reader)?,
            (_, wire) => skip(&mut reader, wire)?,
        }
    }
    Ok(label)
}

fn decode_sample(bytes: &[u8]) -> Result<Sample, IngestError> {
    let mut reader = Reader::new(bytes);
    let mut sample = Sample { t: 0, v: 0.0 };
    while !reader.is_empty() {
        match read_key(&mut reader)? {
            (1, wire) => sample.v = read_f64(&mut reader, wire)?,
            (2, wire) => sample.t = read_i64(&mut reader, wire)?,
            (_, wire) => skip(&mut reader, wire)?,
        }
    }
    Ok(sample)
}

fn decode_exemplar(bytes: &[u8]) -> Result<Exemplar, IngestError> {
    let mut reader = Reader::new(bytes);
    let mut pairs = Vec::new();
    let mut exemplar = Exemplar {
        labels: Labels::default(),
        t: 0,
        v: 0.0,
    };
    while !reader.is_empty() {
        match read_key(&mut reader)? {
            (1, WIRE_LEN) => {
                let label = decode_label(read_len(&mut reader)?)?;
                pairs.push((label.name, label.value));
            }
            (2, wire) => exemplar.v = read_f64(&mut reader, wire)?,
            (3, wire) => exemplar.t = read_i64(&mut reader, wire)?,
            (_, wire) => skip(&mut reader, wire)?,
        }
    }
    exemplar.labels = Labels::from_pairs(pairs);
    Ok(exemplar)
}

fn decode_metadata(bytes: &[u8]) -> Result<MetricMetadata, IngestError> {
    let mut reader = Reader::new(bytes);
    let mut metadata = MetricMetadata {
        metric_family: String::new(),
        metric_type: MetricType::Unknown,
        help: String::new(),
        unit: String::new(),
    };
    while !reader.is_empty() {
        match read_key(&mut reader)? {
            (1, WIRE_VARINT) => {
                metadata.metric_type = MetricType::from_remote_write(
                    reader
                        .uvarint()
                        .ok_or_else(|| malformed("truncated enum"))?,
                )
            }
            (2, WIRE_LEN) => metadata.metric_family = read_str(&mut reader)?.to_owned(),
            (4, WIRE_LEN) => metadata.help = read_str(&mut reader)?.to_owned(),
            (5, WIRE_LEN) => metadata.unit = read_str(&mut reader)?.to_owned(),
            (_, wire) => skip(&mut reader, wire)?,
        }
    }
    Ok(metadata)
}

/// Decode a decompressed `WriteRequest`. Structural errors fail the whole
/// request; a series with invalid labels is dropped and described in
/// [`DecodedWrite::invalid`].
pub fn decode<'a>(body: &'a [u8], check: &LabelCheck) -> Result<DecodedWrite<'a>, IngestError> {
    let mut out = DecodedWrite::default();
    // Prometheus' bodies run ~200 bytes per TimeSeries with ~10 labels and
    // one sample each; reserving for that avoids regrowing the vectors.
    let estimated_series = body.len() / 160 + 1;
    out.series.reserve(estimated_series);
    out.samples.reserve(estimated_series);
    out.labels.reserve(estimated_series * 10);
    out.keys.reserve(body.len() / 2);
    let mut reader = Reader::new(body);
    while !reader.is_empty() {
        match read_key(&mut reader)? {
            (1, WIRE_LEN) => {
                let series_bytes = read_len(&mut reader)?;
                if out.series.len() >= check.max_series_per_request {
                    return Err(IngestError::BadRequest(format!(
                        "request has more than {} series (limits.max_series_per_request)",
                        check.max_series_per_request
                    )));
                }
                decode_series(series_bytes, check, &mut out)?;
            }
            (3, WIRE_LEN) => {
                let metadata = decode_metadata(read_len(&mut reader)?)?;
                if !metadata.metric_family.is_empty() {
                    out.metadata.push(metadata);
                }
            }
            (_, wire) => skip(&mut reader, wire)?,
        }
    }
    Ok(out)
}

fn decode_series<'a>(
    bytes: &'a [u8],
    check: &LabelCheck,
    out: &mut DecodedWrite<'a>,
) -> Result<(), IngestError> {
    let label_start = out.labels.len();
    let sample_start = out.samples.len();
    let exemplar_start = out.exemplars.len();
    let mut histograms = 0usize;
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match read_key(&mut reader)? {
            (1, WIRE_LEN) => {
                let label = decode_label(read_len(&mut reader)?)?;
                // An empty value means "no such label".
                if !label.value.is_empty() {
                    out.labels.push(label);
                }
            }
            (2, WIRE_LEN) => out.samples.push(decode_sample(read_len(&mut reader)?)?),
            (3, WIRE_LEN) => out.exemplars.push(decode_exemplar(read_len(&mut reader)?)?),
            (4, WIRE_LEN) => {
                read_len(&mut reader)?;
                histograms += 1;
            }
            (_, wire) => skip(&mut reader, wire)?,
        }
    }
    if let Err(problem) = check.check_and_sort(&mut out.labels[label_start..]) {
        out.reject(
            label_start,
            format!("{problem}"),
            out.samples.len() - sample_start + histograms,
        );
        out.labels.truncate(label_start);
        out.samples.truncate(sample_start);
        out.exemplars.truncate(exemplar_start);
        return Ok(());
    }
    if histograms > 0 {
        out.reject(
            label_start,
            format!("{histograms} native histogram sample(s) rejected: native histograms are not supported yet"),
            histograms,
        );
    }
    if out.samples.len() == sample_start && out.exemplars.len() == exemplar_start {
        out.labels.truncate(label_start);
        return Ok(());
    }
    let key_start = out.keys.len();
    append_key(out.labels[label_start..].iter().copied(), &mut out.keys);
    let hash = xxhash_rust::xxh3::xxh3_64(&out.keys[key_start..]);
    debug_assert_eq!(hash, label_hash(out.labels[label_start..].iter().copied()));
    out.series.push(DecodedSeries {
        labels: label_start..out.labels.len(),
        key: key_start..out.keys.len(),
        samples: sample_start..out.samples.len(),
        exemplars: exemplar_start..out.exemplars.len(),
        hash,
    });
    Ok(())
}

/// A snappy (block format) body of Prometheus' remote protocols, refused
/// from its header when it would decompress to more than `max` bytes.
pub fn decompress(compressed: &[u8], max: usize) -> Result<Vec<u8>, IngestError> {
    let len = snap::raw::decompress_len(compressed)
        .map_err(|err| IngestError::BadRequest(format!("snappy: {err}")))?;
    if len > max {
        return Err(IngestError::PayloadTooLarge(format!(
            "decompressed body is {len} bytes, over the limit of {max} (limits.max_body_size)"
        )));
    }
    snap::raw::Decoder::new()
        .decompress_vec(compressed)
        .map_err(|err| IngestError::BadRequest(format!("snappy: {err}")))
}

/// Encoding helpers for tests, benches and tools that send remote_write.
pub mod encode {
    use crate::storage::codec::put_uvarint;

    fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
        put_uvarint(out, (field << 3) | wire);
    }

    fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        put_key(out, field, 2);
        put_uvarint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// Encode one TimeSeries (labels in the given order) into a WriteRequest body.
    pub fn timeseries(out: &mut Vec<u8>, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        let mut series = Vec::new();
        for (name, value) in labels {
            let mut label = Vec::new();
            put_bytes(&mut label, 1, name.as_bytes());
            put_bytes(&mut label, 2, value.as_bytes());
            put_bytes(&mut series, 1, &label);
        }
        for (t, v) in samples {
            let mut sample = Vec::new();
            put_key(&mut sample, 1, 1);
            sample.extend_from_slice(&v.to_le_bytes());
            put_key(&mut sample, 2, 0);
            put_uvarint(&mut sample, *t as u64);
            put_bytes(&mut series, 2, &sample);
        }
        put_bytes(out, 1, &series);
    }

    /// Encode one MetricMetadata entry into a WriteRequest body.
    pub fn metadata(out: &mut Vec<u8>, family: &str, metric_type: u64, help: &str, unit: &str) {
        let mut m = Vec::new();
        put_key(&mut m, 1, 0);
        put_uvarint(&mut m, metric_type);
        put_bytes(&mut m, 2, family.as_bytes());
        put_bytes(&mut m, 4, help.as_bytes());
        put_bytes(&mut m, 5, unit.as_bytes());
        put_bytes(out, 3, &m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> LabelCheck {
        LabelCheck {
            max_series_per_request: 10,
            max_labels_per_series: 8,
            max_label_name_length: 64,
            max_label_value_length: 64,
        }
    }

    #[test]
    fn decodes_series_samples_and_metadata() {
        let mut body = Vec::new();
        encode::timeseries(
            &mut body,
            &[("job", "a"), ("__name__", "up"), ("empty", "")],
            &[(1000, 1.0), (2000, -3.5)],
        );
        encode::metadata(&mut body, "up", 2, "whether up", "");
        let decoded = decode(&body, &check()).unwrap();
        let writes = decoded.writes();
        assert_eq!(writes.len(), 1);
        let names: Vec<&str> = writes[0].labels.iter().map(|l| l.name).collect();
        assert_eq!(names, vec!["__name__", "job"]);
        assert_eq!(writes[0].samples[1], Sample { t: 2000, v: -3.5 });
        assert_eq!(
            writes[0].hash,
            Labels::from_pairs([("__name__", "up"), ("job", "a")]).hash()
        );
        assert_eq!(decoded.metadata[0].metric_type, MetricType::Gauge);
    }

    #[test]
    fn invalid_series_is_dropped_not_the_request() {
        let mut body = Vec::new();
        encode::timeseries(&mut body, &[("__name__", "ok")], &[(1, 1.0)]);
        encode::timeseries(
            &mut body,
            &[("__name__", "x"), ("bad-name", "v")],
            &[(1, 1.0)],
        );
        encode::timeseries(
            &mut body,
            &[("__name__", "x"), ("a", "1"), ("a", "2")],
            &[(1, 1.0)],
        );
        encode::timeseries(&mut body, &[("job", "nameless")], &[(1, 1.0)]);
        let decoded = decode(&body, &check()).unwrap();
        assert_eq!(decoded.series_count(), 1);
        assert_eq!(decoded.invalid.len(), 3);
        assert!(
            decoded.invalid[0].contains("invalid label name \"bad-name\""),
            "{:?}",
            decoded.invalid
        );
        assert!(decoded.invalid[1].contains("duplicate label name \"a\""));
        assert!(decoded.invalid[2].contains("no metric name"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = decode(&[0x0a, 0xff, 0xff, 0x01], &check()).unwrap_err();
        assert!(err.to_string().contains("malformed remote write protobuf"));
        let mut body = Vec::new();
        for _ in 0..11 {
            encode::timeseries(&mut body, &[("__name__", "x")], &[(1, 1.0)]);
        }
        let err = decode(&body, &check()).unwrap_err();
        assert!(err.to_string().contains("max_series_per_request"));
    }
}

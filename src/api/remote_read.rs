//! `POST /api/v1/read`: Prometheus' remote read 1.0, so a Prometheus (or
//! Thanos, or anything speaking the protocol) with `remote_read` pointing
//! here answers PromQL over Oxeye's data.
//!
//! The body is a snappy-compressed `prometheus.ReadRequest`; the answer is
//! the first response type the client accepts that Oxeye has, as
//! Prometheus negotiates it:
//! - `SAMPLES` (the default, and what Prometheus 2.x's own client asks for):
//!   one snappy-compressed `ReadResponse` with every query's raw samples;
//! - `STREAMED_XOR_CHUNKS`: `application/x-streamed-protobuf;
//!   proto=prometheus.ChunkedReadResponse` frames (uvarint length, CRC-32C
//!   big-endian, message), each at most [`MAX_FRAME_BYTES`], series sorted by
//!   labels, chunks of at most 120 samples in Prometheus' XOR encoding.
//!
//! Bounds: the compressed and decompressed body (`limits.max_body_size`),
//! queries per request, matchers per query, and the samples one request
//! may read (`query.max_samples`, counted before anything is encoded; over
//! it the answer is 400 naming the limit, as Prometheus answers past
//! `remote_read_sample_limit`). Reads share `query.max_concurrent`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::AppState;
use crate::model::prompb::{self, ReadRequest};
use crate::storage::metrics::matcher::Matcher;
use crate::storage::metrics::SeriesSamples;

/// Queries in one request at most.
const MAX_QUERIES: usize = 256;
/// Matchers in one query at most.
const MAX_MATCHERS: usize = 64;
/// A streamed frame's size target (Prometheus uses 1 MiB).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Samples per XOR chunk (Prometheus' head cuts chunks at 120).
const SAMPLES_PER_CHUNK: usize = 120;

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into() + "\n").into_response()
}

pub async fn read(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let max_body = state.config.limits.max_body_size.as_usize();
    if body.len() > max_body {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over limits.max_body_size ({max_body} bytes)"),
        );
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        if !encoding.as_bytes().eq_ignore_ascii_case(b"snappy") {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {encoding:?}; remote read bodies are snappy"),
            );
        }
    }
    let request = match decode_request(&body, max_body) {
        Ok(request) => request,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let streamed = negotiate(&request.accepted_response_types);
    let queries = match request
        .queries
        .iter()
        .map(query_matchers)
        .collect::<Result<Vec<_>, String>>()
    {
        Ok(queries) => queries,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let Some(slot) = state.query_slot().await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let store = state.store.clone();
    let limit = state.config.query.max_samples;
    let result = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut budget = limit;
        let mut results = Vec::with_capacity(queries.len());
        for (matchers, start, end) in &queries {
            let mut series = Vec::new();
            let mut over = false;
            store.for_each_selected(matchers, *start, *end, |s: SeriesSamples| {
                if s.samples.len() > budget {
                    over = true;
                    return false;
                }
                budget -= s.samples.len();
                if !s.samples.is_empty() {
                    series.push(s);
                }
                true
            });
            if over {
                return Err(format!(
                    "exceeded sample limit ({limit}, query.max_samples): narrow the matchers or the time range"
                ));
            }
            series.sort_by(|a, b| a.labels.pairs().cmp(b.labels.pairs()));
            results.push(series);
        }
        Ok(if streamed {
            encode_streamed(&results)
        } else {
            encode_sampled(&results)
        })
    })
    .await;
    match result {
        Ok(Ok((content_type, body, snappy))) => {
            let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
            if snappy {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, "snappy".parse().expect("header"));
            }
            response
        }
        Ok(Err(message)) => refuse(StatusCode::BAD_REQUEST, message),
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "remote read worker failed",
        ),
    }
}

fn decode_request(body: &[u8], max_body: usize) -> Result<ReadRequest, String> {
    let raw = crate::ingest::remote_write::decompress(body, max_body).map_err(|e| e.to_string())?;
    let request = ReadRequest::decode(raw.as_slice())
        .map_err(|e| format!("not a prometheus.ReadRequest: {e}"))?;
    if request.queries.is_empty() {
        return Err("the ReadRequest has no queries".into());
    }
    if request.queries.len() > MAX_QUERIES {
        return Err(format!(
            "{} queries in one ReadRequest; at most {MAX_QUERIES}",
            request.queries.len()
        ));
    }
    Ok(request)
}

/// The first accepted type Oxeye serves; none listed means samples.
fn negotiate(accepted: &[i32]) -> bool {
    accepted
        .iter()
        .find(|t| {
            matches!(
                **t,
                prompb::RESPONSE_SAMPLES | prompb::RESPONSE_STREAMED_XOR_CHUNKS
            )
        })
        .is_some_and(|t| *t == prompb::RESPONSE_STREAMED_XOR_CHUNKS)
}

fn query_matchers(query: &prompb::Query) -> Result<(Vec<Matcher>, i64, i64), String> {
    if query.matchers.is_empty() {
        return Err("a query has no matchers".into());
    }
    if query.matchers.len() > MAX_MATCHERS {
        return Err(format!(
            "a query has {} matchers; at most {MAX_MATCHERS}",
            query.matchers.len()
        ));
    }
    if query.start_timestamp_ms > query.end_timestamp_ms {
        return Err(format!(
            "start {} is after end {}",
            query.start_timestamp_ms, query.end_timestamp_ms
        ));
    }
    let matchers = query
        .matchers
        .iter()
        .map(|m| match m.r#type {
            0 => Ok(Matcher::equal(&m.name, &m.value)),
            1 => Ok(Matcher::not_equal(&m.name, &m.value)),
            2 | 3 => Matcher::regex(&m.name, &m.value, m.r#type == 3)
                .map_err(|e| format!("invalid regex {:?} for {}: {e}", m.value, m.name)),
            other => Err(format!("unknown matcher type {other}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if matchers.iter().all(|m| m.matches("")) {
        return Err(
            "a query needs at least one matcher that does not match the empty string".into(),
        );
    }
    Ok((matchers, query.start_timestamp_ms, query.end_timestamp_ms))
}

type Encoded = (&'static str, Vec<u8>, bool);

fn encode_sampled(results: &[Vec<SeriesSamples>]) -> Encoded {
    let response = prompb::ReadResponse {
        results: results
            .iter()
            .map(|series| prompb::QueryResult {
                timeseries: series
                    .iter()
                    .map(|s| prompb::TimeSeries {
                        labels: prompb::labels_of(&s.labels),
                        samples: s
                            .samples
                            .iter()
                            .map(|x| prompb::Sample {
                                value: x.v,
                                timestamp: x.t,
                            })
                            .collect(),
                        exemplars: Vec::new(),
                    })
                    .collect(),
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&response.encode_to_vec())
        .unwrap_or_default();
    ("application/x-protobuf", body, true)
}

fn encode_streamed(results: &[Vec<SeriesSamples>]) -> Encoded {
    let mut out = Vec::new();
    for (index, series) in results.iter().enumerate() {
        let mut frame = prompb::ChunkedReadResponse {
            chunked_series: Vec::new(),
            query_index: index as i64,
        };
        let mut frame_bytes = 0usize;
        for s in series {
            let chunks: Vec<prompb::Chunk> = s
                .samples
                .chunks(SAMPLES_PER_CHUNK)
                .map(|part| prompb::Chunk {
                    min_time_ms: part[0].t,
                    max_time_ms: part[part.len() - 1].t,
                    r#type: prompb::CHUNK_XOR,
                    data: xor::encode(part),
                })
                .collect();
            let entry = prompb::ChunkedSeries {
                labels: prompb::labels_of(&s.labels),
                chunks,
            };
            let size = entry.encoded_len();
            if frame_bytes > 0 && frame_bytes + size > MAX_FRAME_BYTES {
                write_frame(&mut out, &frame);
                frame.chunked_series.clear();
                frame_bytes = 0;
            }
            frame_bytes += size;
            frame.chunked_series.push(entry);
        }
        if !frame.chunked_series.is_empty() {
            write_frame(&mut out, &frame);
        }
    }
    (
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        out,
        false,
    )
}

fn write_frame(out: &mut Vec<u8>, frame: &prompb::ChunkedReadResponse) {
    let message = frame.encode_to_vec();
    crate::storage::codec::put_uvarint(out, message.len() as u64);
    out.extend_from_slice(&crc32c(&message).to_be_bytes());
    out.extend_from_slice(&message);
}

/// CRC-32C (Castagnoli), as Prometheus checks frames. `crc32fast` has only
/// the IEEE polynomial; this is the reflected table method.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut crc = i as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
            *slot = crc;
        }
        table
    });
    !data.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// Prometheus' XOR chunk encoding (`tsdb/chunkenc/xor.go`): a big-endian
/// u16 sample count, the first timestamp as a zigzag varint and value as 64
/// bits, the second timestamp's delta as a uvarint, then delta-of-deltas in
/// buckets of 14/17/20/64 bits and values XORed with the previous one (with
/// the leading/trailing-zero window reused when it fits).
pub mod xor {
    use crate::model::Sample;

    #[derive(Default)]
    struct Bits {
        bytes: Vec<u8>,
        /// Bits used in the last byte (0 = a new byte is needed).
        used: u8,
    }

    impl Bits {
        fn bit(&mut self, one: bool) {
            if self.used == 0 {
                self.bytes.push(0);
            }
            if one {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> self.used;
            }
            self.used = (self.used + 1) % 8;
        }

        fn bits(&mut self, value: u64, n: u32) {
            for i in (0..n).rev() {
                self.bit((value >> i) & 1 == 1);
            }
        }

        fn byte(&mut self, b: u8) {
            self.bits(u64::from(b), 8);
        }
    }

    fn put_uvarint(out: &mut Bits, mut v: u64) {
        while v >= 0x80 {
            out.byte((v as u8) | 0x80);
            v >>= 7;
        }
        out.byte(v as u8);
    }

    fn fits(dod: i64, n: u32) -> bool {
        -((1i64 << (n - 1)) - 1) <= dod && dod <= 1i64 << (n - 1)
    }

    /// Encode up to 65535 samples (callers cut at 120).
    pub fn encode(samples: &[Sample]) -> Vec<u8> {
        let samples = &samples[..samples.len().min(u16::MAX as usize)];
        let mut out = Bits::default();
        out.bytes
            .extend_from_slice(&(samples.len() as u16).to_be_bytes());
        let (mut prev_t, mut prev_delta) = (0i64, 0i64);
        let mut prev_v = 0u64;
        let (mut leading, mut trailing) = (0xffu8, 0u8);
        for (i, s) in samples.iter().enumerate() {
            let v = s.v.to_bits();
            match i {
                0 => {
                    put_uvarint(&mut out, ((s.t << 1) ^ (s.t >> 63)) as u64);
                    out.bits(v, 64);
                }
                _ => {
                    let delta = s.t.wrapping_sub(prev_t);
                    if i == 1 {
                        put_uvarint(&mut out, delta as u64);
                    } else {
                        let dod = delta.wrapping_sub(prev_delta);
                        if dod == 0 {
                            out.bit(false);
                        } else if fits(dod, 14) {
                            out.bits(0b10, 2);
                            out.bits(dod as u64, 14);
                        } else if fits(dod, 17) {
                            out.bits(0b110, 3);
                            out.bits(dod as u64, 17);
                        } else if fits(dod, 20) {
                            out.bits(0b1110, 4);
                            out.bits(dod as u64, 20);
                        } else {
                            out.bits(0b1111, 4);
                            out.bits(dod as u64, 64);
                        }
                    }
                    prev_delta = delta;
                    let xor = v ^ prev_v;
                    if xor == 0 {
                        out.bit(false);
                    } else {
                        out.bit(true);
                        let lead = (xor.leading_zeros() as u8).min(31);
                        let trail = xor.trailing_zeros() as u8;
                        if leading != 0xff && lead >= leading && trail >= trailing {
                            out.bit(false);
                            out.bits(xor >> trailing, u32::from(64 - leading - trailing));
                        } else {
                            leading = lead;
                            trailing = trail;
                            out.bit(true);
                            out.bits(u64::from(lead), 5);
                            let significant = 64 - u32::from(lead) - u32::from(trail);
                            // 64 is written as 0 in six bits.
                            out.bits(u64::from(significant) & 0x3f, 6);
                            out.bits(xor >> trail, significant);
                        }
                    }
                }
            }
            prev_t = s.t;
            prev_v = v;
        }
        out.bytes
    }

    struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl Reader<'_> {
        fn bit(&mut self) -> Option<bool> {
            let byte = *self.bytes.get(self.pos / 8)?;
            let bit = byte & (0x80 >> (self.pos % 8)) != 0;
            self.pos += 1;
            Some(bit)
        }
        fn bits(&mut self, n: u32) -> Option<u64> {
            let mut v = 0u64;
            for _ in 0..n {
                v = (v << 1) | u64::from(self.bit()?);
            }
            Some(v)
        }
        fn uvarint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..70).step_by(7) {
                let b = self.bits(8)?;
                v |= (b & 0x7f) << shift;
                if b < 0x80 {
                    return Some(v);
                }
            }
            None
        }
    }

    /// Decode a chunk (`None` when malformed): for tests and tools.
    pub fn decode(data: &[u8]) -> Option<Vec<Sample>> {
        let n = u16::from_be_bytes([*data.first()?, *data.get(1)?]) as usize;
        let mut r = Reader {
            bytes: &data[2..],
            pos: 0,
        };
        let mut out = Vec::with_capacity(n);
        let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
        let (mut leading, mut trailing) = (0u32, 0u32);
        for i in 0..n {
            if i == 0 {
                let z = r.uvarint()?;
                t = ((z >> 1) as i64) ^ -((z & 1) as i64);
                v = r.bits(64)?;
            } else {
                if i == 1 {
                    delta = r.uvarint()? as i64;
                } else {
                    let mut prefix = 0;
                    while prefix < 4 && r.bit()? {
                        prefix += 1;
                    }
                    let dod = match prefix {
                        0 => 0,
                        1..=3 => {
                            let n = [14, 17, 20][prefix - 1];
                            let raw = r.bits(n)?;
                            // Sign-extend n bits (values above 2^(n-1) are negative).
                            if raw > 1 << (n - 1) {
                                raw as i64 - (1i64 << n)
                            } else {
                                raw as i64
                            }
                        }
                        _ => r.bits(64)? as i64,
                    };
                    delta = delta.wrapping_add(dod);
                }
                t = t.wrapping_add(delta);
                if r.bit()? {
                    if r.bit()? {
                        leading = r.bits(5)? as u32;
                        let significant = match r.bits(6)? as u32 {
                            0 => 64,
                            s => s,
                        };
                        trailing = 64u32.checked_sub(leading + significant)?;
                    }
                    let significant = 64 - leading - trailing;
                    v ^= r.bits(significant)? << trailing;
                }
            }
            out.push(Sample {
                t,
                v: f64::from_bits(v),
            });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn xor_chunks_round_trip_edges() {
        let mut samples = Vec::new();
        let mut t = -5_000i64;
        for i in 0..120u32 {
            // Regular, jittered, huge and negative steps; repeated, tiny,
            // huge, NaN, infinite and negative-zero values.
            t += match i % 7 {
                0 => 15_000,
                1 => 15_001,
                2 => 14_000,
                3 => 1 << 40,
                4 => 1,
                _ => 15_000 + i64::from(i) * 37,
            };
            let v = match i % 9 {
                0 => 1.0,
                1 => 1.0,
                2 => f64::from(i) * 1e-300,
                3 => f64::MAX,
                4 => f64::NAN,
                5 => f64::NEG_INFINITY,
                6 => -0.0,
                7 => 0.1 + f64::from(i),
                _ => -123_456.789,
            };
            samples.push(Sample { t, v });
        }
        let encoded = xor::encode(&samples);
        let decoded = xor::decode(&encoded).unwrap();
        assert_eq!(decoded.len(), samples.len());
        for (a, b) in samples.iter().zip(&decoded) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits());
        }
        // A regular, constant series: 18 bytes of header and first two samples,
        // then two bits a sample, as Prometheus' encoder writes it.
        let regular: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 15_000,
                v: 42.0,
            })
            .collect();
        assert!(
            xor::encode(&regular).len() == 2 + 6 + 8 + 2 + (118 * 2usize).div_ceil(8),
            "{}",
            xor::encode(&regular).len()
        );
        assert!(xor::decode(&[0, 5, 1]).is_none(), "truncated");
    }

    #[test]
    fn negotiation_takes_the_first_known_type() {
        assert!(!negotiate(&[]));
        assert!(negotiate(&[1, 0]));
        assert!(!negotiate(&[0, 1]));
        assert!(negotiate(&[7, 1]));
    }
}

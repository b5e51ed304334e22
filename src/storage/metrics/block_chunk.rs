//! The chunk encoding of blocks: one stream per series and block, choosing
//! per series the smallest of three forms (first byte):
//!
//! - `0` Gorilla: a [`super::chunk`] stream (any floats, NaN, ±Inf).
//! - `1` decimal deltas / `2` decimal delta-of-deltas: when every value is
//!   exactly `m / 10^e` for integers `m` (|m| < 2^53) and one `e ≤ 15`, as
//!   scraped values usually are, store `e: u8`, then the timestamps as a
//!   Gorilla delta-of-delta bit stream (`len: uvarint`, bytes), then the
//!   first `m` and the zig-zag varint deltas (or delta-of-deltas) of `m`.
//!   Decoding computes `m as f64 / 10^e`, which the encoder checked gives the
//!   original value bit for bit.
//!
//! Scraped counters and gauges change by a few decimal digits per sample; as
//! integers those are one or two bytes, where the XOR of two floats that
//! differ in their low mantissa bits costs four to six.

use super::chunk::{self, read_dod, unzigzag, write_dod, zigzag, BitReader, BitWriter, ChunkIter};
use crate::model::Sample;
use crate::storage::codec::{put_uvarint, Reader};

const GORILLA: u8 = 0;
const DECIMAL_DELTA: u8 = 1;
const DECIMAL_DOD: u8 = 2;
const MAX_EXPONENT: u32 = 15;
/// Integers up to this magnitude are exact in an f64.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// Encode sorted samples of one series.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    if let Some((exponent, ints)) = decimal_ints(samples) {
        let mut out = Vec::with_capacity(samples.len() * 2 + 16);
        let delta = int_stream(&ints, false);
        let dod = int_stream(&ints, true);
        let (kind, values) = if dod.len() < delta.len() {
            (DECIMAL_DOD, dod)
        } else {
            (DECIMAL_DELTA, delta)
        };
        out.push(kind);
        out.push(exponent as u8);
        let ts = timestamps(samples);
        put_uvarint(&mut out, ts.len() as u64);
        out.extend_from_slice(&ts);
        out.extend_from_slice(&values);
        let gorilla_estimate = chunk::encode(samples);
        if out.len() < gorilla_estimate.len() + 1 {
            return out;
        }
        let mut fallback = Vec::with_capacity(gorilla_estimate.len() + 1);
        fallback.push(GORILLA);
        fallback.extend_from_slice(&gorilla_estimate);
        return fallback;
    }
    let mut out = vec![GORILLA];
    out.extend_from_slice(&chunk::encode(samples));
    out
}

/// Decode `count` samples (all of them, in time order).
pub fn decode(bytes: &[u8], count: u32, out: &mut Vec<Sample>) {
    let Some((&kind, rest)) = bytes.split_first() else {
        return;
    };
    match kind {
        GORILLA => out.extend(ChunkIter::new(rest, count)),
        DECIMAL_DELTA | DECIMAL_DOD => {
            decode_decimal(rest, count, kind == DECIMAL_DOD, out);
        }
        _ => tracing::error!(kind, "unknown block chunk encoding"),
    }
}

fn decode_decimal(bytes: &[u8], count: u32, dod: bool, out: &mut Vec<Sample>) -> Option<()> {
    let mut reader = Reader::new(bytes);
    let exponent = u32::from(reader.u8()?);
    let divisor = 10f64.powi(exponent as i32);
    let ts_len = usize::try_from(reader.uvarint()?).ok()?;
    let mut ts = BitReader::new(reader.bytes(ts_len)?);
    let (mut t, mut t_delta) = (0i64, 0i64);
    let (mut m, mut m_delta) = (0i64, 0i64);
    for i in 0..count {
        match i {
            0 => t = unzigzag(ts.read_uvarint()?),
            1 => {
                t_delta = unzigzag(ts.read_uvarint()?);
                t += t_delta;
            }
            _ => {
                t_delta += read_dod(&mut ts)?;
                t += t_delta;
            }
        }
        let raw = reader.varint()?;
        if i == 0 {
            m = raw;
        } else if dod && i > 1 {
            m_delta += raw;
            m += m_delta;
        } else {
            m_delta = raw;
            m += m_delta;
        }
        out.push(Sample {
            t,
            v: m as f64 / divisor,
        });
    }
    Some(())
}

/// The smallest exponent `e` with every value exactly `m / 10^e`, and the `m`s.
fn decimal_ints(samples: &[Sample]) -> Option<(u32, Vec<i64>)> {
    let exact = |v: f64, e: u32| -> Option<i64> {
        let divisor = 10f64.powi(e as i32);
        let m = (v * divisor).round();
        (m.abs() < MAX_EXACT && m / divisor == v && (m != 0.0 || v.to_bits() == 0))
            .then_some(m as i64)
    };
    let mut exponent = 0;
    for sample in samples {
        if !sample.v.is_finite() {
            return None;
        }
        while exact(sample.v, exponent).is_none() {
            exponent += 1;
            if exponent > MAX_EXPONENT {
                return None;
            }
        }
    }
    // Every value fits the final exponent (a value exact at e is exact at e+1
    // unless it overflows, which `exact` checks again here).
    let ints = samples
        .iter()
        .map(|s| exact(s.v, exponent))
        .collect::<Option<Vec<i64>>>()?;
    Some((exponent, ints))
}

fn int_stream(ints: &[i64], dod: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(ints.len() * 2);
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, &m) in ints.iter().enumerate() {
        let value = if i == 0 {
            m
        } else {
            let delta = m.wrapping_sub(prev);
            let v = if dod && i > 1 {
                delta.wrapping_sub(prev_delta)
            } else {
                delta
            };
            prev_delta = delta;
            v
        };
        put_uvarint(&mut out, zigzag(value));
        prev = m;
    }
    out
}

fn timestamps(samples: &[Sample]) -> Vec<u8> {
    let mut bits = BitWriter::default();
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, sample) in samples.iter().enumerate() {
        match i {
            0 => bits.write_uvarint(zigzag(sample.t)),
            1 => {
                prev_delta = sample.t - prev;
                bits.write_uvarint(zigzag(prev_delta));
            }
            _ => {
                let delta = sample.t - prev;
                write_dod(&mut bits, delta - prev_delta);
                prev_delta = delta;
            }
        }
        prev = sample.t;
    }
    bits.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[Sample]) -> usize {
        let bytes = encode(samples);
        let mut out = Vec::new();
        decode(&bytes, samples.len() as u32, &mut out);
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits(), "{} vs {}", a.v, b.v);
        }
        bytes.len()
    }

    fn series(values: impl Iterator<Item = f64>) -> Vec<Sample> {
        values
            .enumerate()
            .map(|(i, v)| Sample {
                t: 1_700_000_000_000 + i as i64 * 15_000 + (i % 7 == 3) as i64 * 11,
                v,
            })
            .collect()
    }

    #[test]
    fn decimal_counters_are_small_and_exact() {
        let mut v = 123_456.78;
        let samples = series((0..240).map(|i| {
            v = ((v + 15.0 + (i % 13) as f64 * 0.37) * 100.0_f64).round() / 100.0;
            v
        }));
        let size = round_trip(&samples);
        assert_ne!(encode(&samples)[0], GORILLA);
        assert!(size < 240 * 3, "{size} bytes");
    }

    #[test]
    fn integers_gauges_and_specials() {
        round_trip(&series((0..100).map(|i| (i * i) as f64)));
        round_trip(&series((0..100).map(|i| ((i as f64) * 0.1).sin() * 50.0)));
        let specials = series([1.0, f64::NAN, 2.5, f64::INFINITY, -0.0, 3.0].into_iter());
        round_trip(&specials);
        assert_eq!(encode(&specials)[0], GORILLA);
        round_trip(&series([-0.0, 0.0, 1e300, 5e-324].into_iter()));
        round_trip(&series([0.1, 0.2, 0.30000000000000004].into_iter()));
        round_trip(&series(std::iter::once(42.0)));
        round_trip(&series([-1.25, -1.5, 7.125, 1e15, -1e15].into_iter()));
    }
}

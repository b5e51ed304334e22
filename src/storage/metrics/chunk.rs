//! Compressed sample chunks: Gorilla-style delta-of-delta timestamps and XOR
//! float values (Facebook's "Gorilla" paper, as Prometheus' XOR chunks use).
//!
//! A chunk is a bit stream plus a sample count kept beside it (in the head's
//! struct or a block's column), so the stream itself has no header:
//! first sample `t: zigzag varint, v: 64 bits`, second `Δt: zigzag varint,
//! v: xor`, then `ΔΔt: bucketed, v: xor` for every later sample.
//!
//! Written by hand rather than taken from a crate: the format is our on-disk
//! contract, the encoder sits on the ingest hot path, and the few crates that
//! exist are unmaintained or tied to their own framing.

use crate::model::Sample;

/// The head closes a chunk after this many samples (as Prometheus does):
/// long enough to amortise the first sample's 16 bytes, short enough that
/// a query decodes little it does not need.
pub const SAMPLES_PER_HEAD_CHUNK: u32 = 120;

#[derive(Debug, Clone, Default)]
pub(super) struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 = start a new byte).
    free: u8,
}

impl BitWriter {
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            *self.bytes.last_mut().unwrap() |= 1 << self.free;
        }
    }

    /// Write the low `count` bits of `value`, most significant first.
    fn write_bits(&mut self, value: u64, mut count: u8) {
        while count > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = count.min(self.free);
            let shift = count - take;
            let chunk = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            *self.bytes.last_mut().unwrap() |= chunk << (self.free - take);
            self.free -= take;
            count -= take;
        }
    }

    pub(super) fn write_uvarint(&mut self, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.write_bits(u64::from(byte), 8);
                return;
            }
            self.write_bits(u64::from(byte | 0x80), 8);
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, count: u8) -> Option<u64> {
        if count == 0 {
            return Some(0);
        }
        let index = self.pos / 8;
        // Fast path: one unaligned 16-byte load holds any 64 bits at any offset.
        if let Some(window) = self.bytes.get(index..index + 16) {
            let word = u128::from_be_bytes(window.try_into().expect("16 bytes"));
            let offset = (self.pos % 8) as u32;
            let value = ((word << offset) >> (128 - u32::from(count))) as u64;
            self.pos += count as usize;
            return Some(value);
        }
        self.read_bits_slow(count)
    }

    fn read_bits_slow(&mut self, mut count: u8) -> Option<u64> {
        let mut value = 0u64;
        while count > 0 {
            let byte = *self.bytes.get(self.pos / 8)?;
            let offset = (self.pos % 8) as u8;
            let available = 8 - offset;
            let take = count.min(available);
            let bits = (byte >> (available - take)) & (((1u16 << take) - 1) as u8);
            value = (value << take) | u64::from(bits);
            self.pos += take as usize;
            count -= take;
        }
        Some(value)
    }

    pub(super) fn read_uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.read_bits(8)?;
            value |= (byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
}

/// Delta-of-delta timestamps in buckets as in Prometheus: most scrapes land
/// in the first two (1 bit, 16 bits).
pub(super) fn write_dod(bits: &mut BitWriter, dod: i64) {
    if dod == 0 {
        bits.write_bit(false);
    } else if (-(1 << 13) + 1..=(1 << 13)).contains(&dod) {
        bits.write_bits(0b10, 2);
        bits.write_bits(dod as u64, 14);
    } else if (-(1 << 16) + 1..=(1 << 16)).contains(&dod) {
        bits.write_bits(0b110, 3);
        bits.write_bits(dod as u64, 17);
    } else if (-(1 << 19) + 1..=(1 << 19)).contains(&dod) {
        bits.write_bits(0b1110, 4);
        bits.write_bits(dod as u64, 20);
    } else {
        bits.write_bits(0b1111, 4);
        bits.write_bits(dod as u64, 64);
    }
}

pub(super) fn read_dod(bits: &mut BitReader<'_>) -> Option<i64> {
    let mut prefix = 0;
    while prefix < 4 && bits.read_bit()? {
        prefix += 1;
    }
    let width = match prefix {
        0 => return Some(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => 64,
    };
    let raw = bits.read_bits(width)?;
    if width == 64 {
        return Some(raw as i64);
    }
    // Sign-extend; the encoder's ranges are (-2^(w-1), 2^(w-1)].
    let half = 1i64 << (width - 1);
    let value = raw as i64;
    Some(if value > half {
        value - (1 << width)
    } else {
        value
    })
}

pub(super) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(super) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Appends samples to a compressed chunk. Timestamps must not decrease;
/// callers (the head) guarantee it.
#[derive(Debug, Clone, Default)]
pub struct ChunkEncoder {
    bits: BitWriter,
    count: u32,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
    min_t: i64,
}

impl ChunkEncoder {
    pub fn new() -> Self {
        ChunkEncoder {
            leading: 0xff,
            ..Default::default()
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.t
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bits.bytes
    }

    pub fn append(&mut self, t: i64, v: f64) {
        match self.count {
            0 => {
                self.bits.write_uvarint(zigzag(t));
                self.bits.write_bits(v.to_bits(), 64);
                self.min_t = t;
            }
            1 => {
                self.t_delta = t - self.t;
                self.bits.write_uvarint(zigzag(self.t_delta));
                self.write_value(v);
            }
            _ => {
                let delta = t - self.t;
                let dod = delta - self.t_delta;
                self.t_delta = delta;
                write_dod(&mut self.bits, dod);
                self.write_value(v);
            }
        }
        self.t = t;
        self.v_bits = v.to_bits();
        self.count += 1;
    }

    fn write_value(&mut self, v: f64) {
        let xor = v.to_bits() ^ self.v_bits;
        if xor == 0 {
            self.bits.write_bit(false);
            return;
        }
        self.bits.write_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            // Meaningful bits fit in the previous window.
            self.bits.write_bit(false);
            let width = 64 - self.leading - self.trailing;
            self.bits.write_bits(xor >> self.trailing, width);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.bits.write_bit(true);
            self.bits.write_bits(u64::from(leading), 5);
            let width = 64 - leading - trailing;
            // width is 1..=64; 64 is stored as 0 in 6 bits.
            self.bits.write_bits(u64::from(width & 63), 6);
            self.bits.write_bits(xor >> trailing, width);
        }
    }
}

/// Iterates over the samples of a chunk.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    bits: BitReader<'a>,
    remaining: u32,
    read: u32,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> ChunkIter<'a> {
    pub fn new(bytes: &'a [u8], count: u32) -> Self {
        ChunkIter {
            bits: BitReader { bytes, pos: 0 },
            remaining: count,
            read: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            leading: 0,
            trailing: 0,
        }
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.bits.read_bit()? {
            return Some(());
        }
        if self.bits.read_bit()? {
            self.leading = self.bits.read_bits(5)? as u8;
            let mut width = self.bits.read_bits(6)? as u8;
            if width == 0 {
                width = 64;
            }
            self.trailing = 64 - self.leading - width;
        }
        let width = 64 - self.leading - self.trailing;
        let xor = self.bits.read_bits(width)? << self.trailing;
        self.v_bits ^= xor;
        Some(())
    }

    fn next_inner(&mut self) -> Option<Sample> {
        match self.read {
            0 => {
                self.t = unzigzag(self.bits.read_uvarint()?);
                self.v_bits = self.bits.read_bits(64)?;
            }
            1 => {
                self.t_delta = unzigzag(self.bits.read_uvarint()?);
                self.t += self.t_delta;
                self.read_value()?;
            }
            _ => {
                let dod = read_dod(&mut self.bits)?;
                self.t_delta += dod;
                self.t += self.t_delta;
                self.read_value()?;
            }
        }
        self.read += 1;
        Some(Sample {
            t: self.t,
            v: f64::from_bits(self.v_bits),
        })
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let sample = self.next_inner();
        if sample.is_none() {
            // Truncated stream: stop rather than return garbage.
            self.remaining = 0;
        }
        sample
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// Encode sorted samples into one chunk.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new();
    for sample in samples {
        encoder.append(sample.t, sample.v);
    }
    encoder.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[Sample]) {
        let bytes = encode(samples);
        let decoded: Vec<Sample> = ChunkIter::new(&bytes, samples.len() as u32).collect();
        assert_eq!(decoded.len(), samples.len());
        for (a, b) in decoded.iter().zip(samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits());
        }
    }

    #[test]
    fn regular_scrapes_compress_well() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 15_000,
                v: 42.0,
            })
            .collect();
        let bytes = encode(&samples);
        round_trip(&samples);
        // ~2 bits per sample after the first two.
        assert!(bytes.len() < 50, "{} bytes", bytes.len());
    }

    #[test]
    fn every_dod_bucket_and_special_values() {
        let mut t = -5_000i64;
        let mut samples = Vec::new();
        let jumps = [
            0i64,
            15_000,
            15_001,
            14_000,
            80_000,
            15,
            600_000,
            1 << 40,
            1,
            1,
            -3,
        ];
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
            f64::from_bits(crate::model::STALE_NAN_BITS),
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            7.0,
        ];
        for (jump, value) in jumps.iter().zip(values) {
            t += jump;
            samples.push(Sample { t, v: value });
        }
        round_trip(&samples);
    }

    #[test]
    fn random_walk_round_trips() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut t = 1_000;
        let mut v = 100.0;
        let samples: Vec<Sample> = (0..5000)
            .map(|_| {
                t += 15_000 + (next() % 41) as i64 - 20;
                v += (next() % 1000) as f64 / 100.0 - 5.0;
                Sample { t, v }
            })
            .collect();
        round_trip(&samples);
    }

    #[test]
    fn truncated_chunk_stops_cleanly() {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: i * 1000,
                v: i as f64 * 1.5,
            })
            .collect();
        let bytes = encode(&samples);
        let decoded: Vec<Sample> = ChunkIter::new(&bytes[..bytes.len() / 2], 10).collect();
        assert!(decoded.len() < 10);
        assert_eq!(decoded[0], samples[0]);
    }
}

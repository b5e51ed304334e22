//! An extent: the points of a range query's result over consecutive steps
//! of one grid (`first`, `first + step`, …), how it is cut, joined and kept.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::Labels;
use crate::query::promql::{QueryResult, StepSeries, Value};
use crate::storage::codec::{put_uvarint, put_varint, Reader};

/// Version of the encoding, the first byte of every entry.
const FORMAT: u8 = 1;

/// Values (series × steps) an extent may hold: larger ones are not
/// cached, and a stored one claiming more is refused before allocating
/// (64 MiB of `Option<f64>`).
pub const MAX_VALUES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Points {
    Scalar(Vec<f64>),
    /// Series and their value at each step (`None`: no point there).
    Vector(Vec<(Arc<Labels>, Vec<Option<f64>>)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    /// Wall clock (ns) before the evaluations it holds began: later
    /// late writes may have changed it (see `storage::metrics::late`).
    pub computed_ns: i64,
    pub first: i64,
    pub step: i64,
    /// Steps held.
    pub len: usize,
    pub points: Points,
}

impl Extent {
    /// The extent of an evaluation's result over `len` steps from `first`.
    pub fn from_result(result: QueryResult, first: i64, step: i64, computed_ns: i64) -> Extent {
        let len = result.steps.len();
        let points = match result.value {
            Value::Scalar(values) => Points::Scalar(values),
            Value::Vector(series) => {
                Points::Vector(series.into_iter().map(|s| (s.labels, s.values)).collect())
            }
            // Range queries are scalars or vectors (checked before).
            Value::String(_) | Value::Matrix(_) => Points::Vector(Vec::new()),
        };
        Extent {
            computed_ns,
            first,
            step,
            len,
            points,
        }
    }

    /// Values held (series × steps).
    pub fn values(&self) -> usize {
        match &self.points {
            Points::Scalar(v) => v.len(),
            Points::Vector(series) => series.len().saturating_mul(self.len),
        }
    }

    /// The last step held (`first - step` when empty).
    pub fn last(&self) -> i64 {
        self.first + (self.len as i64 - 1) * self.step
    }

    /// Steps `[from, to]` (both on the grid and inside the extent).
    pub fn slice(&self, from: i64, to: i64) -> Extent {
        let a = ((from - self.first) / self.step) as usize;
        let b = ((to - self.first) / self.step) as usize + 1;
        let points = match &self.points {
            Points::Scalar(v) => Points::Scalar(v[a..b].to_vec()),
            Points::Vector(series) => Points::Vector(
                series
                    .iter()
                    .filter(|(_, v)| v[a..b].iter().any(Option::is_some))
                    .map(|(l, v)| (l.clone(), v[a..b].to_vec()))
                    .collect(),
            ),
        };
        Extent {
            computed_ns: self.computed_ns,
            first: from,
            step: self.step,
            len: b - a,
            points,
        }
    }

    /// Consecutive extents of one grid, in time order, as one. Each kept
    /// series appears once, `None` where a part had no point for it;
    /// `computed_ns` is the oldest of the parts'.
    pub fn join(parts: Vec<Extent>) -> Option<Extent> {
        let first = parts.first()?.first;
        let step = parts[0].step;
        let len: usize = parts.iter().map(|p| p.len).sum();
        let computed_ns = parts.iter().map(|p| p.computed_ns).min()?;
        let scalar = matches!(parts[0].points, Points::Scalar(_));
        let points = if scalar {
            let mut values = Vec::with_capacity(len);
            for part in &parts {
                if let Points::Scalar(v) = &part.points {
                    values.extend_from_slice(v);
                }
            }
            Points::Scalar(values)
        } else {
            let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
            let mut series: Vec<(Arc<Labels>, Vec<Option<f64>>)> = Vec::new();
            let mut offset = 0;
            for part in parts {
                if let Points::Vector(list) = part.points {
                    for (labels, values) in list {
                        let i = *index.entry(labels.clone()).or_insert_with(|| {
                            series.push((labels, vec![None; len]));
                            series.len() - 1
                        });
                        series[i].1[offset..offset + values.len()].copy_from_slice(&values);
                    }
                }
                offset += part.len;
            }
            Points::Vector(series)
        };
        Some(Extent {
            computed_ns,
            first,
            step,
            len,
            points,
        })
    }

    /// As a query result (series without a point dropped).
    pub fn into_result(self) -> QueryResult {
        let steps = (0..self.len as i64)
            .map(|k| self.first + k * self.step)
            .collect();
        let value = match self.points {
            Points::Scalar(v) => Value::Scalar(v),
            Points::Vector(series) => Value::Vector(
                series
                    .into_iter()
                    .filter(|(_, v)| v.iter().any(Option::is_some))
                    .map(|(labels, values)| StepSeries {
                        labels,
                        values,
                        drop_name: false,
                    })
                    .collect(),
            ),
        };
        QueryResult { value, steps }
    }

    /// The stored form (before compression).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(FORMAT);
        put_varint(&mut out, self.computed_ns);
        put_varint(&mut out, self.first);
        put_varint(&mut out, self.step);
        put_uvarint(&mut out, self.len as u64);
        match &self.points {
            Points::Scalar(values) => {
                out.push(0);
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Points::Vector(series) => {
                out.push(1);
                put_uvarint(&mut out, series.len() as u64);
                for (labels, values) in series {
                    labels.encode(&mut out);
                    // A presence bitmap, then the present values.
                    let mut bits = vec![0u8; values.len().div_ceil(8)];
                    for (i, v) in values.iter().enumerate() {
                        if v.is_some() {
                            bits[i / 8] |= 1 << (i % 8);
                        }
                    }
                    out.extend_from_slice(&bits);
                    for v in values.iter().flatten() {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Decode what [`Extent::encode`] wrote, of at most `max_len` steps;
    /// `None` for anything else (another version, a truncated or corrupted
    /// entry), with every count checked against the bytes left and
    /// [`MAX_VALUES`] before anything is allocated.
    pub fn decode(data: &[u8], max_len: usize) -> Option<Extent> {
        let mut r = Reader::new(data);
        if r.u8()? != FORMAT {
            return None;
        }
        let computed_ns = r.varint()?;
        let first = r.varint()?;
        let step = r.varint()?;
        let len = usize::try_from(r.uvarint()?).ok()?;
        if step <= 0
            || len == 0
            || len > max_len
            || len > MAX_VALUES
            || first
                .checked_add(step.checked_mul(i64::try_from(len).ok()? - 1)?)
                .is_none()
        {
            return None;
        }
        let left = |r: &Reader<'_>| data.len() - r.position();
        let points = match r.u8()? {
            0 => {
                if len.checked_mul(8)? > left(&r) {
                    return None;
                }
                let values = (0..len).map(|_| r.f64_le()).collect::<Option<Vec<_>>>()?;
                Points::Scalar(values)
            }
            1 => {
                let count = usize::try_from(r.uvarint()?).ok()?;
                // Each series takes at least its bitmap and a label count.
                if count.checked_mul(len.div_ceil(8) + 1)? > left(&r)
                    || count.checked_mul(len)? > MAX_VALUES
                {
                    return None;
                }
                let mut series = Vec::with_capacity(count);
                for _ in 0..count {
                    let labels = Labels::decode(&mut r)?;
                    let bits = r.bytes(len.div_ceil(8))?;
                    let mut values = Vec::with_capacity(len);
                    for i in 0..len {
                        values.push(if bits[i / 8] & (1 << (i % 8)) != 0 {
                            Some(r.f64_le()?)
                        } else {
                            None
                        });
                    }
                    series.push((Arc::new(labels), values));
                }
                Points::Vector(series)
            }
            _ => return None,
        };
        r.is_empty().then_some(Extent {
            computed_ns,
            first,
            step,
            len,
            points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(first: i64, rows: &[(&str, &[Option<f64>])]) -> Extent {
        Extent {
            computed_ns: 7,
            first,
            step: 10,
            len: rows[0].1.len(),
            points: Points::Vector(
                rows.iter()
                    .map(|(job, v)| (Arc::new(Labels::from_pairs([("job", *job)])), v.to_vec()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn slices_join_back_into_the_whole() {
        let whole = vector(
            100,
            &[
                ("a", &[Some(1.0), None, Some(3.0), Some(f64::NAN)]),
                ("b", &[None, None, Some(-0.0), None]),
            ],
        );
        let head = whole.slice(100, 110);
        // b has no point in the first two steps: not carried.
        assert!(matches!(&head.points, Points::Vector(s) if s.len() == 1));
        let tail = whole.slice(120, 130);
        let joined = Extent::join(vec![head, tail]).unwrap();
        assert_eq!(joined.len, 4);
        assert_eq!(joined.encode(), whole.encode());
    }

    #[test]
    fn codec_round_trips_and_refuses_damage() {
        let e = vector(-50, &[("a", &[Some(1.5), None, Some(f64::INFINITY)])]);
        let bytes = e.encode();
        assert_eq!(Extent::decode(&bytes, 3).unwrap().encode(), bytes);
        assert!(Extent::decode(&bytes, 2).is_none(), "longer than asked for");
        for cut in 0..bytes.len() {
            assert!(Extent::decode(&bytes[..cut], 3).is_none(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Extent::decode(&longer, 3).is_none());
        // A huge series count in a short entry allocates nothing.
        let mut bomb = vec![FORMAT];
        put_varint(&mut bomb, 0);
        put_varint(&mut bomb, 0);
        put_varint(&mut bomb, 1);
        put_uvarint(&mut bomb, 1 << 40);
        bomb.push(1);
        put_uvarint(&mut bomb, u64::MAX >> 2);
        assert!(Extent::decode(&bomb, usize::MAX).is_none());
        let scalar = Extent {
            computed_ns: 1,
            first: 0,
            step: 5,
            len: 2,
            points: Points::Scalar(vec![1.0, 2.0]),
        };
        assert_eq!(Extent::decode(&scalar.encode(), 2).unwrap(), scalar);
    }
}

//! Usage on the recommender's step grid, computed straight from a series'
//! samples with PromQL's semantics, so that the numbers equal those of the
//! queries KRR sends (`rate(x[75s])` and instant values at the steps of a
//! `[14d:75s]` subquery) without going through the query engine.

use crate::model::{is_stale_nan, Sample};
use crate::query::promql::functions::extrapolate;

/// Prometheus' default lookback for instant values.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Evaluation steps: multiples of `step` in `(end - window, end]`, the steps
/// Prometheus gives a subquery `[window:step]` evaluated at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub first: i64,
    pub step: i64,
    pub len: usize,
}

impl Grid {
    /// `window` and `step` are positive and `step <= window` (checked by
    /// the caller); `end - window` does not overflow for real timestamps.
    pub fn new(end: i64, window: i64, step: i64) -> Grid {
        let start = end.saturating_sub(window);
        let mut first = start.div_euclid(step).saturating_mul(step);
        if first <= start {
            first = first.saturating_add(step);
        }
        let len = if end < first {
            0
        } else {
            ((end - first) / step + 1) as usize
        };
        Grid { first, step, len }
    }

    pub fn at(&self, i: usize) -> i64 {
        self.first + i as i64 * self.step
    }

    pub fn end(&self) -> i64 {
        self.at(self.len.saturating_sub(1))
    }
}

/// Samples without staleness markers (range functions ignore them).
fn fresh(samples: &[Sample]) -> Vec<Sample> {
    samples
        .iter()
        .copied()
        .filter(|s| !is_stale_nan(s.v))
        .collect()
}

/// `rate(x[range])` of a counter (or, for a gauge, its value) at every
/// step; NaN where PromQL has no value.
pub fn rates(samples: &[Sample], grid: &Grid, range: i64) -> Vec<f64> {
    let samples = fresh(samples);
    let mut out = Vec::with_capacity(grid.len);
    let (mut lo, mut hi) = (0usize, 0usize);
    for i in 0..grid.len {
        let end = grid.at(i);
        let start = end - range;
        while lo < samples.len() && samples[lo].t <= start {
            lo += 1;
        }
        if hi < lo {
            hi = lo;
        }
        while hi < samples.len() && samples[hi].t <= end {
            hi += 1;
        }
        out.push(extrapolate(&samples[lo..hi], end, range, true, true).unwrap_or(f64::NAN));
    }
    out
}

/// The instant value at every step (the latest sample no older than the
/// lookback; a staleness marker ends the series); NaN where absent.
pub fn instants(samples: &[Sample], grid: &Grid) -> Vec<f64> {
    let mut out = Vec::with_capacity(grid.len);
    let mut next = 0usize;
    for i in 0..grid.len {
        let t = grid.at(i);
        while next < samples.len() && samples[next].t <= t {
            next += 1;
        }
        let value = match next.checked_sub(1).map(|j| samples[j]) {
            Some(s) if s.t > t - LOOKBACK_MS && !is_stale_nan(s.v) => s.v,
            _ => f64::NAN,
        };
        out.push(value);
    }
    out
}

/// One CPU usage sample per minute (cores), as metrics-server gives the
/// VPA recommender: for a counter, the increase over the raw sample pairs
/// that end in each minute divided by their duration (a reset counts from
/// zero; pairs more than the lookback apart are skipped); for a gauge, the
/// minute's last value.
pub fn per_minute(samples: &[Sample], counter: bool, from: i64, to: i64) -> Vec<(i64, f64)> {
    const MINUTE: i64 = 60_000;
    let samples = fresh(samples);
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut bucket: Option<(i64, f64, f64)> = None; // (minute end, increase, seconds)
    let flush = |b: Option<(i64, f64, f64)>, out: &mut Vec<(i64, f64)>| {
        if let Some((end, inc, secs)) = b {
            if secs > 0.0 {
                out.push((end, inc / secs));
            }
        }
    };
    for (i, s) in samples.iter().enumerate() {
        if s.t <= from || s.t > to {
            continue;
        }
        let end = (s.t - 1).div_euclid(MINUTE) * MINUTE + MINUTE;
        let (inc, secs) = if counter {
            let Some(prev) = i.checked_sub(1).map(|j| samples[j]) else {
                continue;
            };
            let dt = s.t.saturating_sub(prev.t);
            if dt <= 0 || dt > LOOKBACK_MS {
                continue;
            }
            let inc = if s.v < prev.v { s.v } else { s.v - prev.v };
            (inc, dt as f64 / 1000.0)
        } else {
            (s.v, 1.0)
        };
        match &mut bucket {
            Some((e, i, t)) if *e == end => {
                if counter {
                    *i += inc;
                    *t += secs;
                } else {
                    *i = inc;
                    *t = secs;
                }
            }
            _ => {
                flush(bucket.take(), &mut out);
                bucket = Some((end, inc, secs));
            }
        }
    }
    flush(bucket, &mut out);
    out
}

/// A counter's increase over its samples, counting resets from zero (no
/// extrapolation).
pub fn increase(samples: &[Sample]) -> f64 {
    let samples = fresh(samples);
    samples
        .windows(2)
        .map(|w| {
            if w[1].v < w[0].v {
                w[1].v
            } else {
                w[1].v - w[0].v
            }
        })
        .sum()
}

/// Element-wise maximum, ignoring NaN (`max by (pod, container)` over
/// duplicate series of one container).
pub fn merge_max(into: &mut [f64], other: &[f64]) {
    for (a, b) in into.iter_mut().zip(other) {
        if a.is_nan() || *b > *a {
            *a = *b;
        }
    }
}

pub fn defined(values: &[f64]) -> impl Iterator<Item = f64> + '_ {
    values.iter().copied().filter(|v| !v.is_nan())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(per_second: f64, every_ms: i64, from: i64, to: i64) -> Vec<Sample> {
        (0..)
            .map(|k| from + k * every_ms)
            .take_while(|t| *t <= to)
            .map(|t| Sample {
                t,
                v: (t - from) as f64 / 1000.0 * per_second,
            })
            .collect()
    }

    #[test]
    fn grid_is_left_open_and_aligned() {
        let g = Grid::new(1_000_000, 300_000, 75_000);
        assert_eq!(g.first, 750_000);
        assert_eq!(g.end(), 975_000);
        assert_eq!(g.len, 4);
        let g = Grid::new(750_000, 300_000, 75_000);
        assert_eq!(g.first, 525_000);
        assert_eq!(g.end(), 750_000);
    }

    #[test]
    fn rate_of_a_steady_counter_is_exact() {
        let samples = counter(2.0, 15_000, 0, 3_600_000);
        let g = Grid::new(3_600_000, 3_000_000, 75_000);
        let r = rates(&samples, &g, 75_000);
        assert!(r.iter().all(|v| (v - 2.0).abs() < 1e-9), "{r:?}");
    }

    #[test]
    fn per_minute_usage_of_a_counter_with_a_reset() {
        let mut samples = counter(0.5, 15_000, 0, 300_000);
        for s in samples.iter_mut().filter(|s| s.t >= 180_000) {
            s.v -= 90.0 - 7.5; // reset at 180 s to 7.5
        }
        let m = per_minute(&samples, true, -1, 300_000);
        assert_eq!(m.len(), 5);
        assert!(m.iter().all(|(_, v)| (v - 0.5).abs() < 1e-9), "{m:?}");
        assert_eq!(m[0].0, 60_000);
    }

    #[test]
    fn increase_counts_resets() {
        let s = |t, v| Sample { t, v };
        assert_eq!(increase(&[s(0, 5.0), s(1, 8.0), s(2, 2.0), s(3, 4.0)]), 7.0);
        assert_eq!(increase(&[s(0, 5.0)]), 0.0);
    }

    #[test]
    fn instants_respect_lookback_and_staleness() {
        let samples = vec![
            Sample { t: 0, v: 1.0 },
            Sample {
                t: 60_000,
                v: f64::from_bits(crate::model::STALE_NAN_BITS),
            },
        ];
        let g = Grid {
            first: 0,
            step: 30_000,
            len: 3,
        };
        let v = instants(&samples, &g);
        assert_eq!(v[0], 1.0);
        assert_eq!(v[1], 1.0);
        assert!(v[2].is_nan());
    }
}

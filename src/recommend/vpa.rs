//! The Kubernetes VPA recommender's estimator, reproduced from
//! kubernetes/autoscaler `vertical-pod-autoscaler/pkg/recommender`
//! (`util/histogram*.go`, `util/decaying_histogram.go`, `model/
//! aggregations_config.go`, `logic/estimator.go`, `logic/recommender.go`):
//!
//! - exponential buckets: bucket `n` starts at `first·(1.05ⁿ − 1)/0.05`;
//!   CPU first bucket 0.01 cores up to 1000 cores, memory 1e7 B up to 1e12 B;
//!   a bucket with weight below ε = 1e-4 counts as empty;
//! - samples decay with a 24 h half-life: a sample at `t` weighs
//!   `w·2^((t − ref)/24h)`; CPU samples weigh 0.1, memory contributes one peak
//!   per container per 24 h interval (weight 1, stamped at the interval's
//!   end); an OOM kill adds the peak `max(used + 100 MiB, used × 1.2)`;
//! - `percentile(p)` is the *end* of the first bucket whose running weight
//!   reaches `p·total` (the last bucket answers its start);
//! - target = p90·1.15, lower = p50·1.15·(1 + 0.001/c)^-2,
//!   upper = p95·1.15·(1 + 1/c), with confidence `c = min(history days,
//!   samples / 1440)`, each at least 25 m CPU / 250 MiB split over the pod's
//!   containers; amounts are integers (millicores, bytes), truncated.

pub const HALF_LIFE_MS: i64 = 24 * 3600 * 1000;
const RATIO: f64 = 1.05;
const EPSILON: f64 = 0.001 * MIN_SAMPLE_WEIGHT;
pub const MIN_SAMPLE_WEIGHT: f64 = 0.1;
pub const MEMORY_INTERVAL_MS: i64 = 24 * 3600 * 1000;
const OOM_BUMP_RATIO: f64 = 1.2;
const OOM_MIN_BUMP: f64 = 100.0 * 1024.0 * 1024.0;
const SAFETY_MARGIN: f64 = 0.15;
const POD_MIN_CPU_MILLICORES: f64 = 25.0;
const POD_MIN_MEMORY_BYTES: f64 = 250.0 * 1024.0 * 1024.0;
const MAX_RESOURCE_AMOUNT: f64 = 1e14;

/// `2^((t - reference) / half-life)`, the exponent capped so that weights
/// stay finite over any window (VPA moves its reference after 100
/// half-lives instead; relative weights are the same below the cap).
fn decay(t: i64, reference: i64) -> f64 {
    let exponent = t.saturating_sub(reference) as f64 / HALF_LIFE_MS as f64;
    2f64.powf(exponent.clamp(-1000.0, 1000.0))
}

#[derive(Debug, Clone, Copy)]
pub struct Buckets {
    first: f64,
    count: usize,
}

impl Buckets {
    fn new(max: f64, first: f64) -> Buckets {
        let count = ((max * (RATIO - 1.0) / first + 1.0).ln() / RATIO.ln()).ceil() as usize + 1;
        Buckets { first, count }
    }
    pub fn cpu() -> Buckets {
        Buckets::new(1000.0, 0.01)
    }
    pub fn memory() -> Buckets {
        Buckets::new(1e12, 1e7)
    }
    pub fn count(&self) -> usize {
        self.count
    }
    pub fn start(&self, n: usize) -> f64 {
        if n == 0 {
            0.0
        } else {
            self.first * (RATIO.powi(n as i32) - 1.0) / (RATIO - 1.0)
        }
    }
    pub fn find(&self, v: f64) -> usize {
        if v.is_nan() || v < self.first {
            return 0;
        }
        let n = ((v * (RATIO - 1.0) / self.first + 1.0).ln() / RATIO.ln()) as usize;
        n.min(self.count - 1)
    }
}

/// A decaying histogram. The reference time is fixed at the first sample
/// (rounded to the half-life, as VPA does); weights are kept relative to it.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Buckets,
    weights: Vec<f64>,
    total: f64,
    reference: Option<i64>,
}

impl Histogram {
    pub fn new(buckets: Buckets) -> Histogram {
        Histogram {
            buckets,
            weights: vec![0.0; buckets.count],
            total: 0.0,
            reference: None,
        }
    }

    pub fn add(&mut self, value: f64, weight: f64, t: i64) {
        if value.is_nan() || weight <= 0.0 {
            return;
        }
        let reference = *self.reference.get_or_insert_with(|| {
            // time.Round(halfLife)
            let h = HALF_LIFE_MS;
            (t + h / 2).div_euclid(h) * h
        });
        let w = weight * decay(t, reference);
        self.weights[self.buckets.find(value)] += w;
        self.total += w;
    }

    pub fn subtract(&mut self, value: f64, weight: f64, t: i64) {
        let Some(reference) = self.reference else {
            return;
        };
        let w = weight * decay(t, reference);
        let b = self.buckets.find(value);
        self.weights[b] -= w;
        if self.weights[b] < EPSILON {
            self.weights[b] = 0.0;
        }
        self.total -= w;
        if self.total < EPSILON {
            self.total = 0.0;
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.weights.iter().any(|w| *w >= EPSILON)
    }

    /// VPA's `Percentile`: the end of the bucket where the running weight
    /// first reaches `p·total`; 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let Some(min) = self.weights.iter().position(|w| *w >= EPSILON) else {
            return 0.0;
        };
        let max = self
            .weights
            .iter()
            .rposition(|w| *w >= EPSILON)
            .unwrap_or(min);
        let threshold = p * self.total;
        let mut sum = 0.0;
        let mut bucket = max;
        for (b, w) in self.weights.iter().enumerate().take(max).skip(min) {
            sum += w;
            if sum >= threshold {
                bucket = b;
                break;
            }
        }
        if bucket < self.buckets.count - 1 {
            self.buckets.start(bucket + 1)
        } else {
            self.buckets.start(bucket)
        }
    }
}

/// Feeds one container instance's memory into the daily-peak histogram:
/// one peak per 24 h interval starting at its first sample.
#[derive(Debug, Default)]
pub struct PeakTracker {
    window_end: Option<i64>,
    peak: f64,
}

impl PeakTracker {
    pub fn add(&mut self, hist: &mut Histogram, t: i64, usage: f64) {
        if usage.is_nan() {
            return;
        }
        match self.window_end {
            Some(end) if t < end => {
                if usage > self.peak {
                    if self.peak > 0.0 {
                        hist.subtract(self.peak, 1.0, end);
                    }
                    hist.add(usage, 1.0, end);
                    self.peak = usage;
                }
            }
            _ => {
                let start = self.window_end.unwrap_or(t);
                let end = start
                    + (t - start) / MEMORY_INTERVAL_MS * MEMORY_INTERVAL_MS
                    + MEMORY_INTERVAL_MS;
                self.window_end = Some(end);
                self.peak = usage;
                hist.add(usage, 1.0, end);
            }
        }
    }

    /// An OOM kill at `t` with the container's request: a bumped peak.
    pub fn oom(&mut self, hist: &mut Histogram, t: i64, request: f64) {
        let used = request.max(self.peak);
        let needed = (used + OOM_MIN_BUMP).max(used * OOM_BUMP_RATIO);
        self.add(hist, t, needed);
    }
}

/// VPA's output for one resource (cores or bytes).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub target: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

fn amount(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, MAX_RESOURCE_AMOUNT).trunc()
    }
}

fn with_margin(base: f64) -> f64 {
    base + amount(base * SAFETY_MARGIN)
}

/// The estimator chain for a histogram; `scale` turns the histogram's unit
/// into VPA's integer unit (1000 for CPU → millicores, 1 for bytes).
fn estimate(hist: &Histogram, confidence: f64, scale: f64, minimum: f64) -> Estimate {
    let p = |q: f64| with_margin(amount(hist.percentile(q) * scale));
    let scaled = |base: f64, multiplier: f64, exponent: f64| {
        let factor = (1.0 + multiplier / confidence).powf(exponent);
        if base == 0.0 {
            0.0
        } else {
            amount(base * factor)
        }
    };
    let target = p(0.9).max(minimum);
    let lower = scaled(p(0.5), 0.001, -2.0).max(minimum);
    let upper = scaled(p(0.95), 1.0, 1.0).max(minimum);
    Estimate {
        target: target / scale,
        lower_bound: lower / scale,
        upper_bound: upper / scale,
    }
}

/// CPU estimate in cores for a pod with `containers` containers.
pub fn cpu_estimate(hist: &Histogram, confidence: f64, containers: usize) -> Estimate {
    let minimum = amount(POD_MIN_CPU_MILLICORES / containers.max(1) as f64);
    estimate(hist, confidence, 1000.0, minimum)
}

/// Memory estimate in bytes.
pub fn memory_estimate(hist: &Histogram, confidence: f64, containers: usize) -> Estimate {
    let minimum = amount(POD_MIN_MEMORY_BYTES / containers.max(1) as f64);
    estimate(hist, confidence, 1.0, minimum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_layout_matches_vpa() {
        let cpu = Buckets::cpu();
        assert_eq!(cpu.count(), 176);
        assert_eq!(Buckets::memory().count(), 176);
        assert!((cpu.start(2) - 0.0205).abs() < 1e-12);
        assert_eq!(cpu.find(0.005), 0);
        assert_eq!(cpu.find(0.021), 2);
    }

    #[test]
    fn percentile_answers_bucket_end() {
        let mut h = Histogram::new(Buckets::cpu());
        for i in 0..100 {
            h.add(0.005, 0.1, i * 60_000);
        }
        assert!((h.percentile(0.9) - 0.01).abs() < 1e-12);
    }

    /// The worked example: a week of 5 m CPU answers the 25 m minimum.
    #[test]
    fn tiny_usage_is_raised_to_the_minimum() {
        let mut h = Histogram::new(Buckets::cpu());
        for i in 0..7 * 1440 {
            h.add(0.005, 0.1, i * 60_000);
        }
        let e = cpu_estimate(&h, 7.0, 1);
        assert_eq!(e.target, 0.025);
        assert_eq!(e.upper_bound, 0.025);
        assert_eq!(e.lower_bound, 0.025);
    }

    #[test]
    fn daily_peaks_replace_within_an_interval() {
        let mut h = Histogram::new(Buckets::memory());
        let mut p = PeakTracker::default();
        p.add(&mut h, 0, 1e8);
        p.add(&mut h, 3_600_000, 3e8);
        p.add(&mut h, MEMORY_INTERVAL_MS + 1, 2e8);
        // Two peaks, stamped at their intervals' ends (24 h and 48 h); the
        // reference is the first stamp: 3e8 weighs 1 and 2e8 weighs 2.
        assert!((h.total - 3.0).abs() < 1e-9, "{}", h.total);
        assert!(h.percentile(1.0) >= 3e8);
        assert!(h.percentile(0.5) < 3e8);
    }
}

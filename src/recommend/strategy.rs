//! The right-sizing strategies over one workload container's usage:
//!
//! - `simple` (KRR's default, robusta-dev/krr `strategies/simple.py`): CPU
//!   request = the largest per-pod p95 of `rate(cpu[step])` over the window,
//!   no CPU limit; memory request = limit = the largest working set × 1.15,
//!   or the memory limit at an OOM kill × 1.25 when that is larger;
//! - `simple_limit` (`strategies/simple_limit.py`): CPU request = p66 and
//!   limit = p96 of every pod's rates pooled; memory as `simple`;
//! - `vpa`: the VPA recommender's target (see `vpa.rs`); limits scaled in
//!   proportion to today's limit/request ratio, as VPA's admission does.
//!
//! Both KRR strategies answer "?" for a resource with no data, with fewer
//! than `points_required` points summed over pods, or whose workload has an
//! HPA on that resource (unless `allow_hpa`). KRR's rounding then applies to
//! every strategy: CPU up to whole millicores, at least 10 m; memory up to
//! whole MiB, at least 100 MiB.

use std::ops::Range;

use serde::Serialize;

use super::inventory::{Container, Hpa};
use super::usage::defined;
use super::vpa;

/// PromQL's `quantile` (linear interpolation between closest ranks, as
/// numpy's default too) of values without NaN, in linear time.
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let weight = rank - rank.floor();
    let (_, &mut low, right) = values.select_nth_unstable_by(lower, f64::total_cmp);
    if weight == 0.0 || right.is_empty() {
        return low;
    }
    let high = right.iter().copied().fold(f64::INFINITY, f64::min);
    low * (1.0 - weight) + high * weight
}

pub const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Simple,
    SimpleLimit,
    Vpa,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "simple" => Some(Strategy::Simple),
            "simple_limit" | "simple-limit" => Some(Strategy::SimpleLimit),
            "vpa" => Some(Strategy::Vpa),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Simple => "simple",
            Strategy::SimpleLimit => "simple_limit",
            Strategy::Vpa => "vpa",
        }
    }
    /// The percentile the CPU request is taken at (for the backtest's
    /// tolerance of usage above the request).
    pub fn request_quantile(self, s: &Settings) -> f64 {
        match self {
            Strategy::Simple => s.cpu_percentile / 100.0,
            Strategy::SimpleLimit => s.cpu_request_percentile / 100.0,
            Strategy::Vpa => 0.9,
        }
    }
    pub fn formula(self, s: &Settings) -> String {
        match self {
            Strategy::Simple => format!(
                "cpu request = max over pods of p{} of rate(cpu[step]) over the window, cpu limit unset; \
                 memory request = limit = max(max working set × {:.2}, memory limit at OOM kill × {:.2}); \
                 cpu rounded up to 1m (min 10m), memory up to 1Mi (min 100Mi)",
                s.cpu_percentile,
                1.0 + s.memory_buffer_percentage / 100.0,
                1.0 + s.oom_memory_buffer_percentage / 100.0
            ),
            Strategy::SimpleLimit => format!(
                "cpu request = p{} and cpu limit = p{} of rate(cpu[step]) pooled over pods (linear interpolation); \
                 memory as simple: max(max working set × {:.2}, memory limit at OOM kill × {:.2}); \
                 cpu rounded up to 1m (min 10m), memory up to 1Mi (min 100Mi)",
                s.cpu_request_percentile,
                s.cpu_limit_percentile,
                1.0 + s.memory_buffer_percentage / 100.0,
                1.0 + s.oom_memory_buffer_percentage / 100.0
            ),
            Strategy::Vpa => "VPA recommender: decaying histograms (24h half-life, buckets from 0.01 cores / 1e7 B growing 5%); \
                 cpu samples weight 0.1, memory one peak per pod per 24h (OOM: max(used + 100Mi, used × 1.2)); \
                 target = p90 × 1.15, lower = p50 × 1.15 × (1 + 0.001/c)^-2, upper = p95 × 1.15 × (1 + 1/c), \
                 c = min(history days, samples/1440); min 25m / 250Mi per pod split over containers; \
                 limits keep today's limit/request ratio"
                .to_string(),
        }
    }
}

/// Strategy settings (KRR's names and defaults).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub cpu_percentile: f64,
    pub cpu_request_percentile: f64,
    pub cpu_limit_percentile: f64,
    pub memory_buffer_percentage: f64,
    pub points_required: u64,
    pub allow_hpa: bool,
    pub use_oomkill_data: bool,
    pub oom_memory_buffer_percentage: f64,
}

/// A recommended amount: KRR's `"?"` (undefined), `null` (unset) or a value
/// (cores or bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Unknown,
    Unset,
    Value(f64),
}

impl Amount {
    pub fn value(self) -> Option<f64> {
        match self {
            Amount::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Unknown => s.serialize_str("?"),
            Amount::Unset => s.serialize_none(),
            Amount::Value(v) => s.serialize_f64(*v),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub request: Amount,
    pub limit: Amount,
    pub info: Option<String>,
}

impl Proposal {
    fn undefined(info: &str) -> Proposal {
        Proposal {
            request: Amount::Unknown,
            limit: Amount::Unknown,
            info: Some(info.to_string()),
        }
    }
}

/// One pod's usage of one container on the step grid.
#[derive(Debug, Clone)]
pub struct PodSeries {
    pub pod: String,
    /// `rate(cpu[step])` (cores) per step, NaN where undefined.
    pub cpu: Vec<f64>,
    /// Steps where the CPU series itself had a value (KRR's point count).
    pub cpu_present: Vec<bool>,
    /// Working set (bytes) per step, NaN where absent.
    pub memory: Vec<f64>,
    /// CPU usage (cores) once per minute, as metrics-server hands it to the
    /// VPA recommender: filled for the `vpa` strategy only.
    pub minute_cpu: Vec<(i64, f64)>,
}

/// An OOM kill: the step it was seen at and the memory limit then.
#[derive(Debug, Clone)]
pub struct Oom {
    pub step: usize,
    pub limit: Option<f64>,
    /// The pod whose container was killed.
    pub pod: String,
}

/// Everything the strategies read about one workload container.
#[derive(Debug, Clone, Default)]
pub struct ContainerUsage {
    pub pods: Vec<PodSeries>,
    pub ooms: Vec<Oom>,
    /// CFS periods throttled and run over the window, summed over pods
    /// (cAdvisor's `container_cpu_cfs_{throttled_,}periods_total`).
    pub throttled_periods: f64,
    pub periods: f64,
}

/// What a recommendation was computed from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// CPU statistic before rounding (cores).
    pub cpu_value: Option<f64>,
    pub cpu_points: u64,
    /// Largest working set seen (bytes).
    pub memory_peak: Option<f64>,
    pub memory_points: u64,
    pub pods_with_data: usize,
    pub history_hours: f64,
    pub oom_kills: usize,
    pub oom_limit: Option<f64>,
    /// Share of CFS periods in which the container was throttled (today,
    /// under today's CPU limit), over the whole window.
    pub cpu_throttled_share: Option<f64>,
    /// VPA's bounds (cores / bytes) and confidence, for `vpa`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpa: Option<VpaBounds>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct VpaBounds {
    pub cpu: vpa::Estimate,
    pub memory: vpa::Estimate,
    pub confidence: f64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub cpu: Proposal,
    pub memory: Proposal,
    pub evidence: Evidence,
}

pub struct Context<'a> {
    pub settings: &'a Settings,
    pub hpa: Option<&'a Hpa>,
    pub current: &'a Container,
    pub containers_in_pod: usize,
    /// Time of step 0 and the step (ms).
    pub first: i64,
    pub step: i64,
}

fn round_cpu(v: f64) -> f64 {
    ((v * 1000.0).ceil() / 1000.0).max(0.010)
}

fn round_memory(v: f64) -> f64 {
    ((v / MIB).ceil() * MIB).max(100.0 * MIB)
}

fn rounded(p: Proposal, f: fn(f64) -> f64) -> Proposal {
    let r = |a: Amount| match a {
        Amount::Value(v) if v.is_finite() => Amount::Value(f(v)),
        Amount::Value(_) => Amount::Unknown,
        other => other,
    };
    Proposal {
        request: r(p.request),
        limit: r(p.limit),
        info: p.info,
    }
}

pub fn recommend(
    strategy: Strategy,
    usage: &ContainerUsage,
    steps: Range<usize>,
    ctx: &Context,
) -> Outcome {
    if steps.is_empty() {
        return Outcome {
            cpu: Proposal::undefined("No data"),
            memory: Proposal::undefined("No data"),
            evidence: Evidence::default(),
        };
    }
    let s = ctx.settings;
    let mut evidence = Evidence {
        history_hours: history_hours(usage, steps.clone(), ctx.step),
        ..Evidence::default()
    };
    let window = |v: &[f64]| -> Vec<f64> { defined(&v[steps.clone()]).collect() };
    evidence.cpu_points = usage
        .pods
        .iter()
        .map(|p| p.cpu_present[steps.clone()].iter().filter(|x| **x).count() as u64)
        .sum();
    evidence.memory_points = usage
        .pods
        .iter()
        .map(|p| defined(&p.memory[steps.clone()]).count() as u64)
        .sum();
    let ooms: Vec<&Oom> = usage
        .ooms
        .iter()
        .filter(|o| steps.contains(&o.step))
        .collect();
    evidence.oom_kills = ooms.len();
    evidence.cpu_throttled_share =
        (usage.periods > 0.0).then(|| usage.throttled_periods / usage.periods);
    evidence.oom_limit = ooms.iter().filter_map(|o| o.limit).reduce(f64::max);
    let peaks: Vec<f64> = usage
        .pods
        .iter()
        .filter_map(|p| window(&p.memory).into_iter().reduce(f64::max))
        .collect();
    evidence.memory_peak = peaks.iter().copied().reduce(f64::max);
    let cpu_series: Vec<Vec<f64>> = usage
        .pods
        .iter()
        .map(|p| window(&p.cpu))
        .filter(|v| !v.is_empty())
        .collect();
    evidence.pods_with_data = cpu_series.len().max(peaks.len());

    let hpa_cpu = ctx
        .hpa
        .is_some_and(|h| h.target_cpu_utilization_percentage.is_some());
    let hpa_memory = ctx
        .hpa
        .is_some_and(|h| h.target_memory_utilization_percentage.is_some());

    let (cpu, memory) = match strategy {
        Strategy::Simple | Strategy::SimpleLimit => {
            let cpu = if cpu_series.is_empty() {
                Proposal::undefined("No data")
            } else if evidence.cpu_points < s.points_required {
                Proposal::undefined("Not enough data")
            } else if hpa_cpu && !s.allow_hpa {
                Proposal::undefined("HPA detected")
            } else if strategy == Strategy::Simple {
                let v = cpu_series
                    .iter()
                    .map(|v| quantile(s.cpu_percentile / 100.0, v.clone()))
                    .fold(f64::NAN, f64::max);
                evidence.cpu_value = Some(v);
                Proposal {
                    request: Amount::Value(v),
                    limit: Amount::Unset,
                    info: None,
                }
            } else {
                let pooled: Vec<f64> = cpu_series.concat();
                let request = quantile(s.cpu_request_percentile / 100.0, pooled.clone());
                let limit = quantile(s.cpu_limit_percentile / 100.0, pooled);
                evidence.cpu_value = Some(request);
                Proposal {
                    request: Amount::Value(request),
                    limit: Amount::Value(limit),
                    info: None,
                }
            };
            let memory = if peaks.is_empty() {
                Proposal::undefined("No data")
            } else if evidence.memory_points < s.points_required {
                Proposal::undefined("Not enough data")
            } else if hpa_memory && !s.allow_hpa {
                Proposal::undefined("HPA detected")
            } else {
                let peak = evidence.memory_peak.unwrap_or(0.0);
                let mut v = peak * (1.0 + s.memory_buffer_percentage / 100.0);
                let mut info = None;
                // As KRR: the OOM term needs the limit the kill happened at.
                if s.use_oomkill_data && evidence.oom_limit.is_some() {
                    let oom = evidence.oom_limit.unwrap_or(0.0)
                        * (1.0 + s.oom_memory_buffer_percentage / 100.0);
                    v = v.max(oom);
                    info = Some("OOMKill detected".to_string());
                }
                Proposal {
                    request: Amount::Value(v),
                    limit: Amount::Value(v),
                    info,
                }
            };
            (cpu, memory)
        }
        Strategy::Vpa => vpa_strategy(
            usage,
            steps.clone(),
            ctx,
            &mut evidence,
            hpa_cpu,
            hpa_memory,
        ),
    };
    Outcome {
        cpu: rounded(cpu, round_cpu),
        memory: rounded(memory, round_memory),
        evidence,
    }
}

fn history_hours(usage: &ContainerUsage, steps: Range<usize>, step: i64) -> f64 {
    let mut first = usize::MAX;
    let mut last = 0usize;
    for p in &usage.pods {
        for i in steps.clone() {
            if p.cpu_present[i] || !p.memory[i].is_nan() {
                first = first.min(i);
                last = last.max(i);
            }
        }
    }
    if first == usize::MAX {
        0.0
    } else {
        (last - first) as f64 * step as f64 / 3_600_000.0
    }
}

fn vpa_strategy(
    usage: &ContainerUsage,
    steps: Range<usize>,
    ctx: &Context,
    evidence: &mut Evidence,
    hpa_cpu: bool,
    hpa_memory: bool,
) -> (Proposal, Proposal) {
    let mut cpu_hist = vpa::Histogram::new(vpa::Buckets::cpu());
    let mut memory_hist = vpa::Histogram::new(vpa::Buckets::memory());
    let (mut first, mut last, mut samples) = (i64::MAX, i64::MIN, 0u64);
    let at = |i: usize| ctx.first + i as i64 * ctx.step;
    let (from, to) = (at(steps.start) - ctx.step, at(steps.end.max(1) - 1));
    for p in &usage.pods {
        for &(t, c) in p.minute_cpu.iter().filter(|(t, _)| *t > from && *t <= to) {
            cpu_hist.add(c.max(0.0), vpa::MIN_SAMPLE_WEIGHT, t);
            first = first.min(t);
            last = last.max(t);
            samples += 1;
        }
        // Memory peaks per 24 h, and as VPA does on the container that was
        // killed, an OOM bumps that container's peak: max(request, the
        // interval's peak so far) + 100 MiB or × 1.2.
        let request = ctx.current.requests.memory.unwrap_or(0.0);
        let ooms: Vec<usize> = usage
            .ooms
            .iter()
            .filter(|o| o.pod == p.pod && steps.contains(&o.step))
            .map(|o| o.step)
            .collect();
        let mut peaks = vpa::PeakTracker::default();
        for i in steps.clone() {
            peaks.add(&mut memory_hist, at(i), p.memory[i]);
            if ooms.contains(&i) {
                peaks.oom(&mut memory_hist, at(i), request);
            }
        }
    }
    let minutes = samples as f64;
    let lifespan_days = if samples > 0 {
        (last - first) as f64 / 86_400_000.0
    } else {
        0.0
    };
    let confidence = lifespan_days.min(minutes / 1440.0);
    let cpu = vpa::cpu_estimate(&cpu_hist, confidence, ctx.containers_in_pod);
    let memory = vpa::memory_estimate(&memory_hist, confidence, ctx.containers_in_pod);
    evidence.cpu_value = Some(cpu.target);
    evidence.vpa = Some(VpaBounds {
        cpu,
        memory,
        confidence,
    });
    let scaled_limit =
        |target: f64, request: Option<f64>, limit: Option<f64>| match (request, limit) {
            (Some(r), Some(l)) if r > 0.0 => Amount::Value(target * l / r),
            (_, Some(_)) => Amount::Value(target),
            _ => Amount::Unset,
        };
    let cpu = if cpu_hist.is_empty() {
        Proposal::undefined("No data")
    } else if hpa_cpu && !ctx.settings.allow_hpa {
        Proposal::undefined("HPA detected")
    } else {
        Proposal {
            request: Amount::Value(cpu.target),
            limit: scaled_limit(cpu.target, ctx.current.requests.cpu, ctx.current.limits.cpu),
            info: None,
        }
    };
    let memory = if memory_hist.is_empty() {
        Proposal::undefined("No data")
    } else if hpa_memory && !ctx.settings.allow_hpa {
        Proposal::undefined("HPA detected")
    } else {
        Proposal {
            request: Amount::Value(memory.target),
            limit: scaled_limit(
                memory.target,
                ctx.current.requests.memory,
                ctx.current.limits.memory,
            ),
            info: usage
                .ooms
                .iter()
                .any(|o| steps.contains(&o.step))
                .then(|| "OOMKill detected".to_string()),
        }
    };
    (cpu, memory)
}

/// KRR's severity of the difference between today's value and the
/// recommendation.
pub fn severity(current: Option<f64>, recommended: Amount, memory: bool) -> &'static str {
    let recommended = match recommended {
        Amount::Unknown => return "UNKNOWN",
        Amount::Unset => None,
        Amount::Value(v) => Some(v),
    };
    match (current, recommended) {
        (None, None) => "GOOD",
        (None, _) | (_, None) => "WARNING",
        (Some(c), Some(r)) => {
            let (d, steps) = if memory {
                ((c - r).abs() / MIB, [500.0, 250.0, 100.0])
            } else {
                ((c - r).abs(), [0.5, 0.25, 0.1])
            };
            if d >= steps[0] {
                "CRITICAL"
            } else if d >= steps[1] {
                "WARNING"
            } else if d >= steps[2] {
                "OK"
            } else {
                "GOOD"
            }
        }
    }
}

/// The worst of several severities (KRR's order).
pub fn worst<'a>(all: impl IntoIterator<Item = &'a str>) -> &'static str {
    let all: Vec<&str> = all.into_iter().collect();
    for s in ["CRITICAL", "WARNING", "OK", "GOOD"] {
        if all.contains(&s) {
            return s;
        }
    }
    "UNKNOWN"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_equals_promql() {
        let mut rng = 7u64;
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % 1000) as f64 / 7.0
                })
                .collect();
            for q in [0.0, 0.05, 0.5, 0.66, 0.95, 0.96, 1.0] {
                let want = crate::query::promql::stats::quantile(q, values.clone());
                assert_eq!(quantile(q, values.clone()), want, "n={n} q={q}");
            }
        }
    }

    /// VPA's OOM bump, worked by hand: two days of a steady 200 MiB at
    /// hourly steps, a kill on day 2 with a 256 MiB request. Day 1's peak is
    /// 200 MiB; day 2's becomes max(256 + 100, 256 × 1.2) = 356 MiB (the
    /// request is above the day's peak). The target is p90 of the two
    /// peaks, whose weights are 1 (day 1) and 2 (day 2, a half-life later):
    /// the end of 356 MiB's bucket plus 15 %.
    #[test]
    fn vpa_oom_bumps_the_killed_pods_daily_peak() {
        let hours = 48;
        let pod = PodSeries {
            pod: "p".into(),
            cpu: vec![0.1; hours],
            cpu_present: vec![true; hours],
            memory: vec![200.0 * MIB; hours],
            minute_cpu: (0..hours as i64).map(|h| (h * 3_600_000, 0.1)).collect(),
        };
        let usage = ContainerUsage {
            pods: vec![pod],
            ooms: vec![Oom {
                step: 30,
                limit: Some(512.0 * MIB),
                pod: "p".into(),
            }],
            ..Default::default()
        };
        let settings = Settings {
            cpu_percentile: 95.0,
            cpu_request_percentile: 66.0,
            cpu_limit_percentile: 96.0,
            memory_buffer_percentage: 15.0,
            points_required: 1,
            allow_hpa: false,
            use_oomkill_data: true,
            oom_memory_buffer_percentage: 25.0,
        };
        let mut current = Container::default();
        current.requests.memory = Some(256.0 * MIB);
        let ctx = Context {
            settings: &settings,
            hpa: None,
            current: &current,
            containers_in_pod: 1,
            first: 0,
            step: 3_600_000,
        };
        let out = recommend(Strategy::Vpa, &usage, 0..hours, &ctx);
        let bumped = (256.0 * MIB + 100.0 * MIB).max(256.0 * MIB * 1.2);
        // Bucket end of `bumped` in VPA's memory buckets (1e7 B, × 1.05).
        let n = ((bumped * 0.05 / 1e7 + 1.0).ln() / 1.05f64.ln()).floor() as i32;
        let end = (1e7 * (1.05f64.powi(n + 1) - 1.0) / 0.05).trunc();
        let target = end + (end * 0.15).trunc();
        assert_eq!(out.evidence.vpa.unwrap().memory.target, target);
        assert_eq!(out.memory.info.as_deref(), Some("OOMKill detected"));
    }

    #[test]
    fn krr_rounding_and_minimums() {
        assert_eq!(round_cpu(0.0041), 0.010);
        assert_eq!(round_cpu(0.2501), 0.251);
        assert_eq!(round_memory(10.0), 100.0 * MIB);
        assert_eq!(round_memory(300.5 * MIB), 301.0 * MIB);
    }

    #[test]
    fn krr_severity() {
        assert_eq!(severity(Some(1.0), Amount::Value(0.4), false), "CRITICAL");
        assert_eq!(severity(Some(1.0), Amount::Value(0.7), false), "WARNING");
        assert_eq!(severity(Some(1.0), Amount::Value(0.85), false), "OK");
        assert_eq!(severity(Some(1.0), Amount::Value(0.95), false), "GOOD");
        assert_eq!(severity(Some(1.0), Amount::Unset, false), "WARNING");
        assert_eq!(severity(None, Amount::Unset, false), "GOOD");
        assert_eq!(severity(None, Amount::Unknown, true), "UNKNOWN");
        assert_eq!(
            severity(Some(600.0 * MIB), Amount::Value(50.0 * MIB), true),
            "CRITICAL"
        );
        assert_eq!(worst(["GOOD", "OK", "UNKNOWN"]), "OK");
        assert_eq!(worst(["UNKNOWN"]), "UNKNOWN");
    }
}

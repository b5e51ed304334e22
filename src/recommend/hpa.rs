//! Horizontal scaling from the workload's CPU demand curve (the sum of its
//! pods' usage per step):
//!
//! - **should it autoscale?** The daily variation is the ratio of the p95
//!   to the p5 of the hourly mean demand; at `min_variation` (default 2×)
//!   or more over at least a day of history, an HPA on CPU utilisation is
//!   advised with `target_utilization` (default 70 %), `minReplicas` =
//!   ⌈p5 demand / (request × target)⌉ and `maxReplicas` =
//!   ⌈max demand × 1.2 / (request × target)⌉;
//! - **replay** of an existing HPA (or the advised one) over the window
//!   with Kubernetes' formula: `desired = ⌈replicas × utilisation /
//!   target⌉`, no change within the 10 % tolerance, scale-down only to the
//!   highest desired count of the last 5 minutes (the default stabilisation
//!   window), bounded by min/max. An interval is *overloaded* when the pods'
//!   demand exceeds their total CPU request (usage above 100 % of request:
//!   throttled under a limit equal to the request, starved otherwise).

use serde::Serialize;

use super::usage::Grid;

const TOLERANCE: f64 = 0.1;
const DOWNSCALE_STABILISATION_MS: i64 = 5 * 60 * 1000;
const MAX_REPLICAS_HEADROOM: f64 = 1.2;

#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub target_utilization_percentage: f64,
    /// CPU request per pod used (cores).
    pub cpu_request: f64,
    pub mean_replicas: f64,
    pub peak_replicas: u32,
    /// Share of intervals at maxReplicas with utilisation above target.
    pub capped_share: f64,
    /// Share of intervals where demand exceeded the pods' total request.
    pub overloaded_share: f64,
    pub verdict: String,
    /// Replicas per step (for the chart), NaN where there was no demand.
    #[serde(skip)]
    pub replicas: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub autoscale: bool,
    pub reason: String,
    /// p95 / p5 of the hourly mean demand.
    pub daily_variation: Option<f64>,
    pub demand_p5_cores: Option<f64>,
    pub demand_p95_cores: Option<f64>,
    pub demand_max_cores: Option<f64>,
    pub target_utilization_percentage: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
    /// The workload's own HPA replayed over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_hpa_replay: Option<Replay>,
    /// The advised HPA replayed over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advised_hpa_replay: Option<Replay>,
}

pub struct HpaSpec {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub target: f64,
}

fn ceil_u32(v: f64) -> u32 {
    if v.is_nan() || v <= 0.0 {
        0
    } else {
        // Saturates: infinite demand asks for the most replicas.
        v.ceil().min(u32::MAX as f64) as u32
    }
}

/// Replays the HPA over `demand` (cores per step), starting at `start`
/// replicas.
pub fn replay(demand: &[f64], grid: &Grid, request: f64, spec: &HpaSpec, start: u32) -> Replay {
    // Bounds as stored may disagree (min above max): never trust them to
    // be ordered.
    let lo = spec.min_replicas.max(1);
    let hi = spec.max_replicas.max(lo);
    let bound = |r: u32| r.max(lo).min(hi);
    let mut replicas = bound(start);
    let window = (DOWNSCALE_STABILISATION_MS / grid.step.max(1)).max(1) as usize;
    let mut recent: std::collections::VecDeque<u32> = std::collections::VecDeque::new();
    let (mut sum, mut n, mut peak, mut capped, mut overloaded) = (0.0, 0u64, 0u32, 0u64, 0u64);
    let mut series = Vec::with_capacity(demand.len());
    for &d in demand {
        if d.is_nan() {
            series.push(f64::NAN);
            continue;
        }
        // The state during this interval is the one decided before it.
        let utilization = d / (replicas as f64 * request);
        sum += replicas as f64;
        n += 1;
        peak = peak.max(replicas);
        if utilization > 1.0 {
            overloaded += 1;
        }
        if replicas >= spec.max_replicas && utilization > spec.target {
            capped += 1;
        }
        series.push(replicas as f64);
        let ratio = utilization / spec.target;
        let desired = if (ratio - 1.0).abs() <= TOLERANCE {
            replicas
        } else {
            ceil_u32(replicas as f64 * ratio)
        };
        let desired = bound(desired);
        recent.push_back(desired);
        if recent.len() > window {
            recent.pop_front();
        }
        replicas = if desired >= replicas {
            desired
        } else {
            recent
                .iter()
                .copied()
                .max()
                .unwrap_or(desired)
                .min(replicas)
        };
    }
    let share = |k: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let (capped_share, overloaded_share) = (share(capped), share(overloaded));
    let verdict = if n == 0 {
        "no demand data".to_string()
    } else if overloaded_share > 0.01 && capped_share > 0.005 {
        format!(
            "maxReplicas {} is too low: at the maximum above target in {:.1}% of intervals, overloaded in {:.1}%",
            spec.max_replicas,
            capped_share * 100.0,
            overloaded_share * 100.0
        )
    } else if overloaded_share > 0.01 {
        format!(
            "reacts too late: overloaded in {:.1}% of intervals; lower the target utilisation",
            overloaded_share * 100.0
        )
    } else {
        format!(
            "would have kept demand within requests ({:.2}% of intervals overloaded)",
            overloaded_share * 100.0
        )
    };
    Replay {
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        target_utilization_percentage: spec.target * 100.0,
        cpu_request: request,
        mean_replicas: if n == 0 { 0.0 } else { sum / n as f64 },
        peak_replicas: peak,
        capped_share,
        overloaded_share,
        verdict,
        replicas: series,
    }
}

/// Hourly means of the demand (hours with any data).
fn hourly(demand: &[f64], grid: &Grid) -> Vec<f64> {
    let per_hour = (3_600_000 / grid.step.max(1)).max(1) as usize;
    demand
        .chunks(per_hour)
        .filter_map(|c| {
            let v: Vec<f64> = c.iter().copied().filter(|x| !x.is_nan()).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect()
}

pub struct Inputs<'a> {
    /// Only these kinds can be scaled by an HPA.
    pub scalable: bool,
    pub demand: &'a [f64],
    pub grid: &'a Grid,
    /// Per-pod CPU request to scale against (recommended, else today's).
    pub request: Option<f64>,
    pub current: Option<(HpaSpec, f64)>,
    pub replicas_now: u32,
    pub target: f64,
    pub min_variation: f64,
}

pub fn advise(mut i: Inputs) -> Advice {
    // A workload with an HPA keeps its target; the advice is about bounds.
    if let Some((spec, _)) = &i.current {
        i.target = spec.target;
    }
    let hours = hourly(i.demand, i.grid);
    let q = |p: f64| super::strategy::quantile(p, hours.clone());
    let (p5, p95) = (q(0.05), q(0.95));
    let max = i
        .demand
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .reduce(f64::max);
    let variation = if hours.is_empty() {
        None
    } else if p5 > 0.0 {
        Some(p95 / p5)
    } else if p95 > 0.0 {
        Some(f64::INFINITY)
    } else {
        Some(1.0)
    };
    let mut advice = Advice {
        autoscale: false,
        reason: String::new(),
        daily_variation: variation.filter(|v| v.is_finite()),
        demand_p5_cores: (!hours.is_empty()).then_some(p5),
        demand_p95_cores: (!hours.is_empty()).then_some(p95),
        demand_max_cores: max,
        target_utilization_percentage: i.target * 100.0,
        min_replicas: None,
        max_replicas: None,
        current_hpa_replay: None,
        advised_hpa_replay: None,
    };
    if let Some((spec, request)) = &i.current {
        advice.current_hpa_replay = Some(replay(i.demand, i.grid, *request, spec, i.replicas_now));
    }
    if !i.scalable {
        advice.reason =
            "not a Deployment, StatefulSet or ReplicaSet: an HPA cannot scale it".into();
        return advice;
    }
    let Some(request) = i.request.filter(|r| *r > 0.0) else {
        advice.reason = "no CPU request to scale against".into();
        return advice;
    };
    if hours.len() < 24 {
        advice.reason = format!(
            "{} hours of history; a day is needed to see daily variation",
            hours.len()
        );
        return advice;
    }
    let per_pod = request * i.target;
    let min = ceil_u32(p5 / per_pod).max(1);
    let max_r = ceil_u32(max.unwrap_or(0.0) * MAX_REPLICAS_HEADROOM / per_pod).max(min);
    match variation {
        Some(v) if v >= i.min_variation && max_r > min => {
            advice.autoscale = true;
            let times = if v.is_finite() {
                format!("{v:.1}×")
            } else {
                "from nothing to busy".to_string()
            };
            advice.reason = format!(
                "demand varies {times} over the day (p95 {:.3} vs p5 {:.3} cores per hour): scale between {min} and {max_r} replicas at {:.0}% CPU",
                p95,
                p5,
                i.target * 100.0
            );
            advice.min_replicas = Some(min);
            advice.max_replicas = Some(max_r);
            let spec = HpaSpec {
                min_replicas: min,
                max_replicas: max_r,
                target: i.target,
            };
            advice.advised_hpa_replay =
                Some(replay(i.demand, i.grid, request, &spec, i.replicas_now));
        }
        Some(v) => {
            advice.reason = format!(
                "demand varies only {:.1}× over the day (threshold {:.1}×): a fixed replica count fits",
                v.min(1e9),
                i.min_variation
            );
        }
        None => advice.reason = "no demand data".into(),
    }
    if let Some(replay) = &advice.current_hpa_replay {
        let bounds = match (advice.min_replicas, advice.max_replicas) {
            (Some(min), Some(max)) if (min, max) != (replay.min_replicas, replay.max_replicas) => {
                format!("; the demand calls for {min}..{max} replicas")
            }
            _ => String::new(),
        };
        advice.reason = format!(
            "today's HPA ({}..{} replicas at {:.0}% CPU) replayed: {}{bounds}",
            replay.min_replicas,
            replay.max_replicas,
            replay.target_utilization_percentage,
            replay.verdict
        );
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_scales_up_and_stabilises_down() {
        let grid = Grid {
            first: 0,
            step: 60_000,
            len: 40,
        };
        // 20 minutes at 4 cores, then 20 at 1 core; request 1 core, target 50%.
        let demand: Vec<f64> = (0..40).map(|i| if i < 20 { 4.0 } else { 1.0 }).collect();
        let spec = HpaSpec {
            min_replicas: 1,
            max_replicas: 10,
            target: 0.5,
        };
        let r = replay(&demand, &grid, 1.0, &spec, 2);
        assert_eq!(r.replicas[0], 2.0);
        assert_eq!(r.replicas[1], 8.0);
        // Scale-down waits for the 5-minute window.
        assert_eq!(r.replicas[21], 8.0);
        assert_eq!(r.replicas[39], 2.0);
        assert_eq!(r.peak_replicas, 8);
        // Only the first interval ran 4 cores on 2 one-core pods.
        assert!((r.overloaded_share - 1.0 / 40.0).abs() < 1e-9);
    }
}

//! Kubernetes right-sizing and autoscaling advice from the stored cAdvisor
//! and kube-state-metrics series: what each workload container should
//! request (KRR's `simple`/`simple_limit` or the VPA recommender), whether
//! and how the workload should autoscale, a backtest of every
//! recommendation on the stored history, and ready-to-apply manifests.
//!
//! Reads the metrics store directly (one selection per pod and metric,
//! evaluated on the step grid in `usage.rs`) rather than through PromQL:
//! the numbers are those of KRR's queries, computed without a query engine
//! in between. Data flows in one direction: store → here → api/ui.

pub mod cache;
pub mod cli;
pub mod cluster;
pub mod database;
pub mod hpa;
pub mod inventory;
pub mod lru;
pub mod manifest;
pub mod pgstats;
pub mod pools;
pub mod sql;
pub mod strategy;
pub mod usage;
pub mod vpa;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::is_stale_nan;
use crate::storage::metrics::matcher::Matcher;
use crate::storage::metrics::MetricsStore;

pub use inventory::Filter;
use inventory::{Inventory, Workload};
use strategy::{Amount, ContainerUsage, Context, Oom, Outcome, PodSeries};
pub use strategy::{Settings, Strategy};
use usage::Grid;

/// Names of the usage series and their labels (`[recommendations]`).
#[derive(Debug, Clone)]
pub struct Names {
    pub cpu_usage: String,
    /// The CPU series is a counter of seconds (cAdvisor); false: a gauge
    /// of cores (the OTel Collector's `container.cpu.usage`).
    pub cpu_is_counter: bool,
    pub memory_usage: String,
    pub namespace_label: String,
    pub pod_label: String,
    pub container_label: String,
}

/// Everything a run is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub filter: Filter,
    pub strategy: Strategy,
    pub window_ms: i64,
    pub step_ms: i64,
    pub end_ms: i64,
    /// Keep per-step usage and replica series for charts (one workload);
    /// without it only the results are kept, so a run over thousands of
    /// workloads holds no per-step data once each workload is done.
    pub keep_series: bool,
}

/// Limits and defaults (from `[recommendations]`).
#[derive(Debug, Clone)]
pub struct Options {
    pub names: Names,
    pub settings: Settings,
    pub cluster: String,
    pub hpa_target_utilization: f64,
    pub hpa_min_variation: f64,
    /// Most pods one run analyses.
    pub max_pods: usize,
    /// Most steps per series (window / step).
    pub max_steps: usize,
    /// Most pod × container × step values one workload may hold in memory.
    pub max_points_per_workload: u64,
    /// A run stops with an error after this long (`query.timeout`).
    pub timeout: Option<std::time::Duration>,
    /// Share of the window a backtest trains on (the rest is replayed).
    pub backtest_train_fraction: f64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RecommendError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("recommendation run timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// A backtest: trained on the first part of the window, replayed on the
/// rest.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    pub train_hours: f64,
    pub test_hours: f64,
    pub trained_cpu_request: Amount,
    pub trained_memory_limit: Amount,
    /// Intervals (pod × step) where CPU usage exceeded the request.
    pub cpu_over_request_share: Option<f64>,
    /// Intervals where CPU usage exceeded the recommended limit (throttled).
    pub cpu_throttled_share: Option<f64>,
    /// Intervals where the working set exceeded the memory limit (OOM).
    pub memory_over_limit_intervals: u64,
    /// Against today's requests over the test part, summed over pods.
    pub cpu_core_hours_saved: Option<f64>,
    pub memory_gib_hours_saved: Option<f64>,
    /// False when there was nothing to test (no recommendation, e.g. "?").
    pub tested: bool,
    pub passed: bool,
    pub verdict: String,
}

/// The saving of applying a recommendation now, at the current replicas.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Saving {
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
}

/// One workload container's result.
pub struct ContainerResult {
    pub workload: usize,
    pub container: String,
    pub outcome: Outcome,
    pub backtest: Backtest,
    pub saving: Saving,
    pub severity: BTreeMap<&'static str, &'static str>,
}

/// One workload's analysis.
pub struct WorkloadResult {
    pub containers: Vec<ContainerResult>,
    pub hpa: hpa::Advice,
    /// Summed CPU demand per step (cores), for charts.
    pub demand: Vec<f64>,
    /// Per container: per-step max over pods of CPU and memory, for charts.
    pub peaks: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
}

pub struct Report {
    pub request: Request,
    pub grid: Grid,
    pub workloads: Vec<Workload>,
    pub results: Vec<WorkloadResult>,
    pub notes: Vec<String>,
    pub duration: std::time::Duration,
    pub pods: usize,
}

fn select_pod(
    store: &MetricsStore,
    names: &Names,
    metric: &str,
    ns: &str,
    pod: &str,
    mint: i64,
    maxt: i64,
) -> Vec<(String, Vec<crate::model::Sample>)> {
    let matchers = [
        Matcher::equal("__name__", metric),
        Matcher::equal(names.namespace_label.clone(), ns),
        Matcher::equal(names.pod_label.clone(), pod),
    ];
    store
        .select(&matchers, mint, maxt)
        .into_iter()
        .map(|s| {
            (
                s.labels
                    .get(&names.container_label)
                    .unwrap_or_default()
                    .to_string(),
                s.samples,
            )
        })
        .collect()
}

/// OOM kills of a pod's containers: the step where
/// `kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}`
/// appears (or `container_oom_events_total` rises), with the memory limit.
#[allow(clippy::too_many_arguments)]
fn ooms_of(
    store: &MetricsStore,
    names: &Names,
    ns: &str,
    pod: &str,
    grid: &Grid,
    mint: i64,
    maxt: i64,
    limits: &BTreeMap<String, inventory::Container>,
) -> BTreeMap<String, Vec<Oom>> {
    let mut out: BTreeMap<String, Vec<Oom>> = BTreeMap::new();
    // The first step at or after `t`.
    let step_of = |t: i64| -> usize {
        let i = -(grid.first.saturating_sub(t)).div_euclid(grid.step);
        (i.max(0) as usize).min(grid.len.saturating_sub(1))
    };
    let reason = [
        Matcher::equal(
            "__name__",
            "kube_pod_container_status_last_terminated_reason",
        ),
        Matcher::equal("namespace", ns),
        Matcher::equal("pod", pod),
        Matcher::equal("reason", "OOMKilled"),
    ];
    let reasons = store.select(&reason, mint, maxt);
    // The memory limit series of the pod's containers, read only when it
    // was OOM-killed: KRR takes the largest limit seen while the last
    // termination reason says OOMKilled.
    let limit_series: BTreeMap<String, Vec<crate::model::Sample>> = if reasons.is_empty() {
        BTreeMap::new()
    } else {
        let m = [
            Matcher::equal("__name__", "kube_pod_container_resource_limits"),
            Matcher::equal("namespace", ns),
            Matcher::equal("pod", pod),
            Matcher::equal("resource", "memory"),
        ];
        store
            .select(&m, mint, maxt)
            .into_iter()
            .map(|s| {
                (
                    s.labels.get("container").unwrap_or_default().to_string(),
                    s.samples,
                )
            })
            .collect()
    };
    let limit_at = |container: &str, t: i64| -> Option<f64> {
        let samples = limit_series.get(container)?;
        let i = samples.partition_point(|x| x.t <= t);
        samples
            .get(i.checked_sub(1)?)
            .or_else(|| samples.first())
            .map(|x| x.v)
            .filter(|v| !is_stale_nan(*v))
    };
    for s in reasons {
        let container = s.labels.get("container").unwrap_or_default().to_string();
        let today = limits.get(&container).and_then(|c| c.limits.memory);
        // A new OOM each time the series turns to 1 (it stays 1 until the
        // container terminates for another reason); its limit is the
        // largest while the series stays 1.
        let mut previous = 0.0;
        for x in s.samples.iter().filter(|x| !is_stale_nan(x.v)) {
            let limit = limit_at(&container, x.t).or(today);
            if x.v >= 1.0 && previous < 1.0 {
                out.entry(container.clone()).or_default().push(Oom {
                    step: step_of(x.t),
                    limit,
                    pod: pod.to_string(),
                });
            } else if x.v >= 1.0 {
                if let Some(last) = out.get_mut(&container).and_then(|v| v.last_mut()) {
                    last.limit = match (last.limit, limit) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            previous = x.v;
        }
    }
    let events = [
        Matcher::equal("__name__", "container_oom_events_total"),
        Matcher::equal(names.namespace_label.clone(), ns),
        Matcher::equal(names.pod_label.clone(), pod),
    ];
    for s in store.select(&events, mint, maxt) {
        let container = s
            .labels
            .get(&names.container_label)
            .unwrap_or_default()
            .to_string();
        if out.contains_key(&container) {
            continue; // already known from kube-state-metrics
        }
        let limit = limits.get(&container).and_then(|c| c.limits.memory);
        let fresh: Vec<_> = s.samples.iter().filter(|x| !is_stale_nan(x.v)).collect();
        for w in fresh.windows(2) {
            if w[1].v > w[0].v {
                out.entry(container.clone()).or_default().push(Oom {
                    step: step_of(w[1].t),
                    limit,
                    pod: pod.to_string(),
                });
            }
        }
    }
    out
}

fn options_settings_json(options: &Options, request: &Request) -> Value {
    let s = &options.settings;
    json!({
        "history_duration": request.window_ms as f64 / 3_600_000.0,
        "timeframe_duration": request.step_ms as f64 / 60_000.0,
        "cpu_percentile": s.cpu_percentile,
        "cpu_request": s.cpu_request_percentile,
        "cpu_limit": s.cpu_limit_percentile,
        "memory_buffer_percentage": s.memory_buffer_percentage,
        "points_required": s.points_required,
        "allow_hpa": s.allow_hpa,
        "use_oomkill_data": s.use_oomkill_data,
        "oom_memory_buffer_percentage": s.oom_memory_buffer_percentage,
    })
}

/// Runs the analysis.
pub fn run(
    store: &MetricsStore,
    options: &Options,
    request: Request,
) -> Result<Report, RecommendError> {
    let started = Instant::now();
    if request.step_ms <= 0 || request.window_ms <= 0 || request.step_ms > request.window_ms {
        return Err(RecommendError::BadRequest(
            "window and step must be positive and the step no longer than the window".into(),
        ));
    }
    let steps = (request.window_ms / request.step_ms) as u64;
    if steps > options.max_steps as u64 {
        return Err(RecommendError::TooLarge(format!(
            "window/step gives {steps} steps per series, over recommendations.max_steps ({}); use a larger step",
            options.max_steps
        )));
    }
    let end = request.end_ms;
    let mint = end.checked_sub(request.window_ms).ok_or_else(|| {
        RecommendError::BadRequest("window reaches before the earliest timestamp".into())
    })?;
    // A rate needs the samples just before the first step too.
    let read_from = mint.saturating_sub(request.step_ms);
    let grid = Grid::new(end, request.window_ms, request.step_ms);
    let inv: Inventory = inventory::load(store, &options.names, &request.filter, read_from, end);
    let pods: usize = inv.workloads.iter().map(|w| w.pods.len()).sum();
    if pods > options.max_pods {
        return Err(RecommendError::TooLarge(format!(
            "{pods} pods match, over recommendations.max_pods ({}); narrow the request with namespace= or workload=",
            options.max_pods
        )));
    }
    for w in &inv.workloads {
        let points = (w.pods.len() as u64)
            .saturating_mul(w.containers.len() as u64)
            .saturating_mul(grid.len as u64);
        if points > options.max_points_per_workload {
            return Err(RecommendError::TooLarge(format!(
                "{}/{} {}: {} pods × {} containers × {} steps is over recommendations.max_points_per_workload ({}); use a larger step or a shorter window",
                w.namespace,
                w.kind,
                w.name,
                w.pods.len(),
                w.containers.len(),
                grid.len,
                options.max_points_per_workload
            )));
        }
    }
    let deadline = options.timeout.map(|t| started + t);
    let timed_out = std::sync::atomic::AtomicBool::new(false);
    let mut notes = Vec::new();
    if !inv.has_kube_state_metrics && !inv.workloads.is_empty() {
        notes.push(
            "no kube-state-metrics series (kube_pod_owner): workloads were inferred from pod names, \
             and today's requests, limits, replicas and HPAs are unknown"
                .to_string(),
        );
    }
    if inv.workloads.is_empty() {
        notes.push(format!(
            "no workloads: no {} or {} series with {}/{}/{} labels in the window",
            options.names.cpu_usage,
            options.names.memory_usage,
            options.names.namespace_label,
            options.names.pod_label,
            options.names.container_label
        ));
    }

    // Workloads are independent: split them over the available cores.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(inv.workloads.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<WorkloadResult>> = Vec::new();
    results.resize_with(inv.workloads.len(), || None);
    let collected = parking_lot::Mutex::new(results);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= inv.workloads.len() {
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() > d) {
                    timed_out.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                let r = analyse(
                    store,
                    options,
                    &request,
                    &grid,
                    &inv.workloads[i],
                    i,
                    read_from,
                    end,
                );
                collected.lock()[i] = Some(r);
            });
        }
    });
    if timed_out.into_inner() {
        return Err(RecommendError::Timeout(options.timeout.unwrap_or_default()));
    }
    let results = collected.into_inner().into_iter().flatten().collect();
    Ok(Report {
        request,
        grid,
        workloads: inv.workloads,
        results,
        notes,
        duration: started.elapsed(),
        pods,
    })
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    store: &MetricsStore,
    options: &Options,
    request: &Request,
    grid: &Grid,
    w: &Workload,
    index: usize,
    mint: i64,
    maxt: i64,
) -> WorkloadResult {
    let names = &options.names;
    let mut usage: BTreeMap<String, ContainerUsage> = BTreeMap::new();
    for pod in &w.pods {
        let mut per_container: BTreeMap<String, PodSeries> = BTreeMap::new();
        let blank = |pod: &str| PodSeries {
            pod: pod.to_string(),
            cpu: vec![f64::NAN; grid.len],
            cpu_present: vec![false; grid.len],
            memory: vec![f64::NAN; grid.len],
            minute_cpu: Vec::new(),
        };
        for (container, samples) in select_pod(
            store,
            names,
            &names.cpu_usage,
            &w.namespace,
            &pod.name,
            mint,
            maxt,
        ) {
            if !w.containers.contains_key(&container) {
                continue;
            }
            let entry = per_container
                .entry(container)
                .or_insert_with(|| blank(&pod.name));
            let values = if names.cpu_is_counter {
                usage::rates(&samples, grid, request.step_ms)
            } else {
                usage::instants(&samples, grid)
            };
            usage::merge_max(&mut entry.cpu, &values);
            if request.strategy == Strategy::Vpa {
                let minutes = usage::per_minute(
                    &samples,
                    names.cpu_is_counter,
                    grid.first - grid.step,
                    grid.end(),
                );
                // Several series per container (a restart starts a new
                // cAdvisor series): all of them, the larger per minute.
                entry.minute_cpu.extend(minutes);
                entry
                    .minute_cpu
                    .sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
                entry.minute_cpu.dedup_by_key(|m| m.0);
            }
            let present = if names.cpu_is_counter {
                usage::instants(&samples, grid)
            } else {
                values
            };
            for (p, v) in entry.cpu_present.iter_mut().zip(present) {
                *p |= !v.is_nan();
            }
        }
        for (container, samples) in select_pod(
            store,
            names,
            &names.memory_usage,
            &w.namespace,
            &pod.name,
            mint,
            maxt,
        ) {
            if !w.containers.contains_key(&container) {
                continue;
            }
            let entry = per_container
                .entry(container)
                .or_insert_with(|| blank(&pod.name));
            usage::merge_max(&mut entry.memory, &usage::instants(&samples, grid));
        }
        for (container, series) in per_container {
            usage.entry(container).or_default().pods.push(series);
        }
        for (metric, throttled) in [
            ("container_cpu_cfs_throttled_periods_total", true),
            ("container_cpu_cfs_periods_total", false),
        ] {
            for (container, samples) in
                select_pod(store, names, metric, &w.namespace, &pod.name, mint, maxt)
            {
                if let Some(u) = w
                    .containers
                    .contains_key(&container)
                    .then(|| usage.entry(container).or_default())
                {
                    let n = usage::increase(&samples);
                    if throttled {
                        u.throttled_periods += n;
                    } else {
                        u.periods += n;
                    }
                }
            }
        }
        for (container, ooms) in ooms_of(
            store,
            names,
            &w.namespace,
            &pod.name,
            grid,
            mint,
            maxt,
            &w.containers,
        ) {
            if w.containers.contains_key(&container) {
                usage.entry(container).or_default().ooms.extend(ooms);
            }
        }
    }

    let cut = ((grid.len as f64) * options.backtest_train_fraction) as usize;
    let replicas_now = w.replicas.unwrap_or(0.0).max(0.0) as u32;
    let mut containers = Vec::new();
    let mut peaks = BTreeMap::new();
    let mut demand = vec![f64::NAN; grid.len];
    for (name, current) in &w.containers {
        let u = usage.remove(name).unwrap_or_default();
        let ctx = Context {
            settings: &options.settings,
            hpa: w.hpa.as_ref(),
            current,
            containers_in_pod: w.containers.len(),
            first: grid.first,
            step: grid.step,
        };
        let outcome = strategy::recommend(request.strategy, &u, 0..grid.len, &ctx);
        let trained = strategy::recommend(request.strategy, &u, 0..cut, &ctx);
        let backtest = backtest(
            &u,
            &trained,
            current,
            cut..grid.len,
            grid,
            request.strategy,
            &options.settings,
        );
        let saving = Saving {
            cpu_cores: match (current.requests.cpu, outcome.cpu.request.value()) {
                (Some(c), Some(r)) => Some((c - r) * replicas_now as f64 + 0.0),
                _ => None,
            },
            memory_bytes: match (current.requests.memory, outcome.memory.request.value()) {
                (Some(c), Some(r)) => Some((c - r) * replicas_now as f64 + 0.0),
                _ => None,
            },
        };
        let mut severity = BTreeMap::new();
        severity.insert(
            "requests.cpu",
            strategy::severity(current.requests.cpu, outcome.cpu.request, false),
        );
        severity.insert(
            "requests.memory",
            strategy::severity(current.requests.memory, outcome.memory.request, true),
        );
        severity.insert(
            "limits.cpu",
            strategy::severity(current.limits.cpu, outcome.cpu.limit, false),
        );
        severity.insert(
            "limits.memory",
            strategy::severity(current.limits.memory, outcome.memory.limit, true),
        );
        // Chart data and demand.
        for p in &u.pods {
            for (d, c) in demand.iter_mut().zip(&p.cpu) {
                if !c.is_nan() {
                    *d = if d.is_nan() { *c } else { *d + c };
                }
            }
        }
        if request.keep_series {
            let mut cpu_max = vec![f64::NAN; grid.len];
            let mut mem_max = vec![f64::NAN; grid.len];
            for p in &u.pods {
                usage::merge_max(&mut cpu_max, &p.cpu);
                usage::merge_max(&mut mem_max, &p.memory);
            }
            peaks.insert(name.clone(), (cpu_max, mem_max));
        }
        containers.push(ContainerResult {
            workload: index,
            container: name.clone(),
            outcome,
            backtest,
            saving,
            severity,
        });
    }

    // HPA: per-pod request summed over containers.
    let sum_opt = |f: &dyn Fn(&ContainerResult) -> Option<f64>| -> Option<f64> {
        containers.iter().map(f).sum::<Option<f64>>()
    };
    let recommended_request = sum_opt(&|c| c.outcome.cpu.request.value());
    let current_request: Option<f64> = w.containers.values().map(|c| c.requests.cpu).sum();
    // Today's HPA, when its stored settings make sense.
    let current = w.hpa.as_ref().and_then(|h| {
        let target = h.target_cpu_utilization_percentage? / 100.0;
        let min = h.min_replicas.unwrap_or(1.0);
        let max = h.max_replicas?;
        let request = current_request?;
        let sane = target.is_finite()
            && target > 0.0
            && request > 0.0
            && min >= 0.0
            && max >= min.max(1.0)
            && max <= 1e6;
        sane.then(|| {
            (
                hpa::HpaSpec {
                    min_replicas: (min as u32).max(1),
                    max_replicas: max as u32,
                    target,
                },
                request,
            )
        })
    });
    let advice = hpa::advise(hpa::Inputs {
        scalable: matches!(w.kind.as_str(), "Deployment" | "StatefulSet" | "ReplicaSet"),
        demand: &demand,
        grid,
        request: recommended_request.or(current_request),
        current,
        replicas_now: replicas_now.max(1),
        target: options.hpa_target_utilization,
        min_variation: options.hpa_min_variation,
    });
    let mut advice = advice;
    if !request.keep_series {
        demand = Vec::new();
        for replay in [
            &mut advice.current_hpa_replay,
            &mut advice.advised_hpa_replay,
        ]
        .into_iter()
        .flatten()
        {
            replay.replicas = Vec::new();
        }
    }
    WorkloadResult {
        containers,
        hpa: advice,
        demand,
        peaks,
    }
}

fn backtest(
    u: &ContainerUsage,
    trained: &Outcome,
    current: &inventory::Container,
    test: std::ops::Range<usize>,
    grid: &Grid,
    strategy: Strategy,
    settings: &Settings,
) -> Backtest {
    let hours = |n: usize| n as f64 * grid.step as f64 / 3_600_000.0;
    let request = trained.cpu.request.value();
    let limit = trained.cpu.limit.value();
    let mem_limit = trained.memory.limit.value();
    let mem_request = trained.memory.request.value();
    let (mut cpu_n, mut over, mut throttled, mut mem_over) = (0u64, 0u64, 0u64, 0u64);
    let (mut cpu_saved, mut mem_saved) = (0.0f64, 0.0f64);
    let step_hours = hours(1);
    for p in &u.pods {
        for i in test.clone() {
            let c = p.cpu[i];
            if !c.is_nan() {
                cpu_n += 1;
                if request.is_some_and(|r| c > r) {
                    over += 1;
                }
                if limit.is_some_and(|l| c > l) {
                    throttled += 1;
                }
            }
            // Savings accrue for as long as the pod runs.
            if p.cpu_present[i] {
                if let (Some(now), Some(r)) = (current.requests.cpu, request) {
                    cpu_saved += (now - r) * step_hours;
                }
            }
            let m = p.memory[i];
            if !m.is_nan() && mem_limit.is_some_and(|l| m > l) {
                mem_over += 1;
            }
            if p.cpu_present[i] || !m.is_nan() {
                if let (Some(now), Some(r)) = (current.requests.memory, mem_request) {
                    mem_saved += (now - r) * step_hours / (1024.0 * 1024.0 * 1024.0);
                }
            }
        }
    }
    let share = |k: u64| (cpu_n > 0 && request.is_some()).then(|| k as f64 / cpu_n as f64);
    let over_share = share(over);
    let tolerance = (2.0 * (1.0 - strategy.request_quantile(settings))).max(0.1);
    let mut problems = Vec::new();
    let tested = request.is_some() || mem_limit.is_some() || mem_request.is_some();
    if mem_over > 0 {
        problems.push(format!(
            "the working set exceeded the recommended memory limit in {mem_over} intervals (would have been OOM-killed)"
        ));
    }
    if let Some(s) = over_share.filter(|s| *s > tolerance) {
        problems.push(format!(
            "CPU usage exceeded the recommended request in {:.1}% of intervals (tolerated: {:.0}%)",
            s * 100.0,
            tolerance * 100.0
        ));
    }
    let passed = problems.is_empty();
    Backtest {
        train_hours: hours(test.start),
        test_hours: hours(test.len()),
        trained_cpu_request: trained.cpu.request,
        trained_memory_limit: trained.memory.limit,
        cpu_over_request_share: over_share,
        cpu_throttled_share: limit.and(share(throttled)),
        memory_over_limit_intervals: mem_over,
        cpu_core_hours_saved: (current.requests.cpu.is_some() && request.is_some())
            .then_some(cpu_saved),
        memory_gib_hours_saved: (current.requests.memory.is_some() && mem_request.is_some())
            .then_some(mem_saved),
        tested,
        passed: tested && passed,
        verdict: if !tested {
            let why: Vec<&str> = [&trained.cpu.info, &trained.memory.info]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            format!(
                "not tested: the first part gave no recommendation ({})",
                why.join(", ")
            )
        } else if passed && request.is_none() {
            "passed (memory only: no CPU recommendation): the memory limit trained on the first part held on the rest".into()
        } else if passed {
            "passed: the recommendation trained on the first part held on the rest".into()
        } else {
            format!("failed: {}", problems.join("; "))
        },
    }
}

impl Report {
    /// KRR's `--format json` shape (`scans[]` of `object`, `recommended`,
    /// `severity`), with Oxeye's evidence, backtest, saving, HPA advice
    /// and patches as extra fields of each scan.
    pub fn to_json(&self, options: &Options) -> Value {
        let mut scans = Vec::new();
        let mut costs = 0.0;
        for r in &self.results {
            for c in &r.containers {
                let w = &self.workloads[c.workload];
                let current = &w.containers[&c.container];
                let severity = strategy::worst(c.severity.values().copied());
                costs += match severity {
                    "CRITICAL" => 1.0,
                    "WARNING" => 0.7,
                    _ => 0.0,
                };
                let value = |a: Amount, key: &str| json!({"value": a, "severity": c.severity[key]});
                scans.push(json!({
                    "object": {
                        "cluster": options.cluster,
                        "name": w.name,
                        "container": c.container,
                        "pods": w.pods,
                        "hpa": w.hpa,
                        "namespace": w.namespace,
                        "kind": w.kind,
                        "allocations": {
                            "requests": {"cpu": current.requests.cpu, "memory": current.requests.memory},
                            "limits": {"cpu": current.limits.cpu, "memory": current.limits.memory},
                            "info": {},
                        },
                        "warnings": if w.inferred { vec!["WorkloadInferredFromPodName"] } else { vec![] },
                        "labels": {},
                        "annotations": {},
                    },
                    "recommended": {
                        "requests": {
                            "cpu": value(c.outcome.cpu.request, "requests.cpu"),
                            "memory": value(c.outcome.memory.request, "requests.memory"),
                        },
                        "limits": {
                            "cpu": value(c.outcome.cpu.limit, "limits.cpu"),
                            "memory": value(c.outcome.memory.limit, "limits.memory"),
                        },
                        "info": {"cpu": c.outcome.cpu.info, "memory": c.outcome.memory.info},
                    },
                    "severity": severity,
                    "evidence": c.outcome.evidence,
                    "backtest": c.backtest,
                    "saving": c.saving,
                    "hpa_advice": r.hpa,
                    "patch": manifest::resources_patch(w, &c.container, &c.outcome, current),
                    "hpa_manifest": manifest::hpa(w, &r.hpa),
                }));
            }
        }
        let n = scans.len() as f64;
        let score = if n == 0.0 {
            0
        } else {
            ((n - costs) / n * 100.0) as i64
        };
        json!({
            "scans": scans,
            "score": score,
            "resources": ["cpu", "memory"],
            "description": self.request.strategy.formula(&options.settings),
            "strategy": {"name": self.request.strategy.name(), "settings": options_settings_json(options, &self.request)},
            "errors": [],
            "clusterSummary": {},
            "config": {
                "cpu_min_value": 10,
                "memory_min_value": 100,
                "strategy": self.request.strategy.name(),
                "other_args": options_settings_json(options, &self.request),
            },
            "window": {
                "first_step_ms": self.grid.first,
                "last_step_ms": self.grid.end(),
                "step_seconds": self.request.step_ms as f64 / 1000.0,
                "steps": self.grid.len,
            },
            "workloads_analysed": self.workloads.len(),
            "pods_analysed": self.pods,
            "duration_seconds": self.duration.as_secs_f64(),
            "notes": self.notes,
        })
    }
}

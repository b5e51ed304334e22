//! Beyond one workload: per-namespace `ResourceQuota` and `LimitRange`
//! suggestions from the recommended requests, and how many nodes of each
//! shape the recommended requests would need (first-fit-decreasing bin
//! packing) against today's requests and today's nodes.
//!
//! - ResourceQuota: `requests.*` = Σ recommended request (today's where
//!   the recommendation is "?") × replicas (an HPA's maxReplicas when
//!   larger), and `limits.memory` likewise from memory limits, each plus
//!   `headroom` (20 %), rounded up (CPU to 100 m, memory to 64 MiB).
//! - LimitRange (type Container): `defaultRequest` = the median request of
//!   the namespace's containers, `default` (limit) = the median memory
//!   limit, `max` = the largest request or limit plus headroom (a
//!   LimitRange `max` also becomes the default limit of containers without
//!   one).
//! - Nodes: every live pod of an analysed workload asks for the sum of its
//!   containers' requests (the recommendation, today's where there is none);
//!   pods are placed largest first (by the larger of their CPU and memory
//!   share of a node) on the first node with room, opening nodes of one
//!   shape at a time. The same packing of today's requests is the baseline,
//!   so the saving compares like with like; DaemonSets and pods outside the
//!   analysed workloads are not counted.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::strategy::MIB;
use super::Report;
use crate::model::is_stale_nan;
use crate::storage::metrics::matcher::Matcher;
use crate::storage::metrics::MetricsStore;

const HEADROOM: f64 = 0.2;

fn round_up(v: f64, unit: f64) -> f64 {
    (v / unit).ceil() * unit
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

/// Today's values of a kube-state-metrics family, keyed by labels.
fn current(
    store: &MetricsStore,
    metric: &str,
    namespace: Option<&str>,
    mint: i64,
    maxt: i64,
) -> Vec<(std::sync::Arc<crate::model::Labels>, f64)> {
    let mut m = vec![Matcher::equal("__name__", metric)];
    if let Some(ns) = namespace {
        m.push(Matcher::equal("namespace", ns));
    }
    let from = maxt.saturating_sub(3_600_000).max(mint);
    store
        .select(&m, from, maxt)
        .into_iter()
        .filter_map(|s| {
            let v = s.samples.iter().rev().find(|x| !is_stale_nan(x.v))?.v;
            Some((s.labels, v))
        })
        .collect()
}

#[derive(Debug, Default)]
struct Sums {
    cpu_request: f64,
    memory_request: f64,
    memory_limit: f64,
    containers_cpu: Vec<f64>,
    containers_memory: Vec<f64>,
    containers_memory_limit: Vec<f64>,
    containers_cpu_limit: Vec<f64>,
    unknown: usize,
}

/// Per-namespace quota and limit-range suggestions.
pub fn namespaces(store: &MetricsStore, report: &Report) -> Value {
    let mut sums: BTreeMap<String, Sums> = BTreeMap::new();
    for r in &report.results {
        for c in &r.containers {
            let w = &report.workloads[c.workload];
            // A quota must leave room for an HPA's largest scale.
            let hpa_max = w.hpa.as_ref().and_then(|h| h.max_replicas).unwrap_or(0.0);
            let replicas = w.replicas.unwrap_or(0.0).max(hpa_max).max(0.0);
            let now = &w.containers[&c.container];
            let s = sums.entry(w.namespace.clone()).or_default();
            // Without a recommendation ("?"), today's request is what the
            // pods will keep asking for.
            let cpu = c.outcome.cpu.request.value().or(now.requests.cpu);
            let memory = c.outcome.memory.request.value().or(now.requests.memory);
            if c.outcome.cpu.request.value().is_none() || c.outcome.memory.request.value().is_none()
            {
                s.unknown += 1;
            }
            if let Some(cpu) = cpu {
                s.cpu_request += cpu * replicas;
                s.containers_cpu.push(cpu);
            }
            if let Some(memory) = memory {
                s.memory_request += memory * replicas;
                s.containers_memory.push(memory);
            }
            if let Some(l) = c.outcome.cpu.limit.value() {
                s.containers_cpu_limit.push(l);
            }
            if let Some(l) = c.outcome.memory.limit.value().or(now.limits.memory) {
                s.memory_limit += l * replicas;
                s.containers_memory_limit.push(l);
            }
        }
    }
    let (mint, maxt) = (report.grid.first, report.grid.end());
    let mut out = Vec::new();
    for (ns, s) in sums {
        let mut quota_now = serde_json::Map::new();
        for (labels, v) in current(store, "kube_resourcequota", Some(&ns), mint, maxt) {
            let (Some(resource), Some(kind)) = (labels.get("resource"), labels.get("type")) else {
                continue;
            };
            quota_now.insert(format!("{kind}:{resource}"), json!(v));
        }
        let mut limit_range_now = serde_json::Map::new();
        for (labels, v) in current(store, "kube_limitrange", Some(&ns), mint, maxt) {
            let (Some(resource), Some(constraint)) =
                (labels.get("resource"), labels.get("constraint"))
            else {
                continue;
            };
            limit_range_now.insert(format!("{constraint}:{resource}"), json!(v));
        }
        // LimitRange max bounds limits too: the largest of both.
        let cpu_max = s
            .containers_cpu
            .iter()
            .chain(&s.containers_cpu_limit)
            .copied()
            .reduce(f64::max);
        let memory_max = s.containers_memory_limit.iter().copied().reduce(f64::max);
        out.push(json!({
            "namespace": ns,
            "headroom": HEADROOM,
            "containers_without_recommendation": s.unknown,
            "recommended_requests": {"cpu": s.cpu_request, "memory": s.memory_request},
            "resource_quota": {
                "requests.cpu": round_up(s.cpu_request * (1.0 + HEADROOM), 0.1),
                "requests.memory": round_up(s.memory_request * (1.0 + HEADROOM), 64.0 * MIB),
                "limits.memory": round_up(s.memory_limit * (1.0 + HEADROOM), 64.0 * MIB),
            },
            "limit_range": {
                "defaultRequest": {"cpu": median(s.containers_cpu.clone()), "memory": median(s.containers_memory.clone())},
                "default": {"memory": median(s.containers_memory_limit.clone())},
                "max": {
                    "cpu": cpu_max.map(|v| round_up(v * (1.0 + HEADROOM), 0.1)),
                    "memory": memory_max.map(|v| round_up(v * (1.0 + HEADROOM), 64.0 * MIB)),
                },
            },
            "current_resource_quota": quota_now,
            "current_limit_range": limit_range_now,
        }));
    }
    json!({"namespaces": out})
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Shape {
    pub cpu: f64,
    pub memory: f64,
}

/// Nodes of `shape` needed for `pods` (cpu, memory) by first-fit
/// decreasing; pods larger than a node are counted apart.
pub fn pack(pods: &[(f64, f64)], shape: Shape) -> (usize, usize) {
    let mut order: Vec<(f64, f64)> = pods.to_vec();
    let share = |p: &(f64, f64)| (p.0 / shape.cpu).max(p.1 / shape.memory);
    order.sort_by(|a, b| share(b).total_cmp(&share(a)));
    let mut free: Vec<(f64, f64)> = Vec::new();
    let mut too_big = 0;
    for (cpu, memory) in order {
        if cpu > shape.cpu || memory > shape.memory {
            too_big += 1;
            continue;
        }
        match free.iter_mut().find(|(c, m)| *c >= cpu && *m >= memory) {
            Some(node) => {
                node.0 -= cpu;
                node.1 -= memory;
            }
            None => free.push((shape.cpu - cpu, shape.memory - memory)),
        }
    }
    (free.len(), too_big)
}

/// Node counts per shape before and after right-sizing.
pub fn nodes(store: &MetricsStore, report: &Report) -> Value {
    let (mint, maxt) = (report.grid.first, report.grid.end());
    // Today's nodes and their shapes.
    let mut allocatable: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (labels, v) in current(store, "kube_node_status_allocatable", None, mint, maxt) {
        let Some(node) = labels.get("node") else {
            continue;
        };
        let e = allocatable.entry(node.to_string()).or_default();
        match labels.get("resource") {
            Some("cpu") => e.0 = v,
            Some("memory") => e.1 = v,
            _ => {}
        }
    }
    let mut shapes: Vec<(Shape, usize)> = Vec::new();
    for (cpu, memory) in allocatable
        .values()
        .copied()
        .filter(|(c, m)| *c > 0.0 && *m > 0.0)
    {
        let shape = Shape { cpu, memory };
        match shapes.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, n)) => *n += 1,
            None => shapes.push((shape, 1)),
        }
    }
    // Pods: per live pod, the sum over containers.
    let (mut now, mut after, mut skipped) = (Vec::new(), Vec::new(), 0usize);
    for r in &report.results {
        let w = &report.workloads[r.containers.first().map_or(0, |c| c.workload)];
        if r.containers.is_empty() {
            continue;
        }
        let (mut cpu_now, mut mem_now, mut cpu_rec, mut mem_rec) = (0.0, 0.0, 0.0, 0.0);
        let mut known = true;
        for c in &r.containers {
            let cur = &w.containers[&c.container];
            let (cn, mn) = (
                cur.requests.cpu.unwrap_or(0.0),
                cur.requests.memory.unwrap_or(0.0),
            );
            cpu_now += cn;
            mem_now += mn;
            let cr = c.outcome.cpu.request.value().or(cur.requests.cpu);
            let mr = c.outcome.memory.request.value().or(cur.requests.memory);
            known &= cr.is_some() && mr.is_some();
            cpu_rec += cr.unwrap_or(0.0);
            mem_rec += mr.unwrap_or(0.0);
        }
        if !known {
            skipped += 1;
            continue;
        }
        // DaemonSets run one pod per node whatever the node count.
        if w.kind == "DaemonSet" {
            continue;
        }
        for _ in w.pods.iter().filter(|p| !p.deleted) {
            now.push((cpu_now, mem_now));
            after.push((cpu_rec, mem_rec));
        }
    }
    let mut per_shape = Vec::new();
    for (shape, count) in &shapes {
        let (needed_now, too_big_now) = pack(&now, *shape);
        let (needed_after, too_big_after) = pack(&after, *shape);
        per_shape.push(json!({
            "allocatable": {"cpu": shape.cpu, "memory": shape.memory},
            "nodes_today": count,
            "needed_with_todays_requests": needed_now,
            "needed_with_recommended_requests": needed_after,
            "nodes_saved": needed_now as i64 - needed_after as i64,
            "pods_larger_than_a_node": {"today": too_big_now, "recommended": too_big_after},
        }));
    }
    json!({
        "nodes_today": allocatable.len(),
        "pods_packed": after.len(),
        "workloads_skipped": skipped,
        "method": "first-fit decreasing of each live pod's summed requests (recommended, else today's) onto nodes of one shape; today's requests packed the same way as the baseline; DaemonSets and pods outside the analysed workloads not counted",
        "shapes": per_shape,
        "notes": if shapes.is_empty() { vec!["no kube_node_status_allocatable series: node shapes unknown"] } else { vec![] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_decreasing() {
        let shape = Shape {
            cpu: 4.0,
            memory: 8.0,
        };
        // 3 + 1 and 2 + 2 fit on two nodes; a 5-core pod fits nowhere.
        let (n, big) = pack(
            &[(1.0, 1.0), (2.0, 2.0), (3.0, 1.0), (2.0, 2.0), (5.0, 1.0)],
            shape,
        );
        assert_eq!((n, big), (2, 1));
        assert_eq!(pack(&[], shape), (0, 0));
    }
}

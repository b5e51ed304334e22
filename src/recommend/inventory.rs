//! What runs in the cluster, read from the stored kube-state-metrics and
//! usage series: workloads found through the owner chain (pod → ReplicaSet
//! → Deployment, pod → Job → CronJob, pod → StatefulSet/DaemonSet), their
//! containers' requests and limits, replicas and HPAs. Without
//! kube-state-metrics, workloads are inferred from pod names.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{is_stale_nan, Labels, Sample};
use crate::storage::metrics::matcher::Matcher;
use crate::storage::metrics::MetricsStore;

use super::Names;

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Resources {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hpa {
    pub name: String,
    pub min_replicas: Option<f64>,
    pub max_replicas: Option<f64>,
    pub current_replicas: Option<f64>,
    pub desired_replicas: Option<f64>,
    pub target_cpu_utilization_percentage: Option<f64>,
    pub target_memory_utilization_percentage: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pod {
    pub name: String,
    /// Not seen in the last five minutes of the window.
    pub deleted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Container {
    pub requests: Resources,
    pub limits: Resources,
    /// Time of each request/limit value taken (the newest pod's), in the
    /// order cpu request, memory request, cpu limit, memory limit.
    seen: [i64; 4],
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub pods: Vec<Pod>,
    pub containers: BTreeMap<String, Container>,
    pub replicas: Option<f64>,
    pub hpa: Option<Hpa>,
    /// Found from pod names, not from kube-state-metrics.
    pub inferred: bool,
}

impl Workload {
    pub fn key(&self) -> (String, String, String) {
        (self.namespace.clone(), self.kind.clone(), self.name.clone())
    }
}

/// Which workloads to look at.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub workload: Option<String>,
}

/// The latest non-stale sample of each series. Reads the last hour first
/// (kube-state-metrics series are long and only their newest value
/// matters); series without a sample there (pods gone before the end) are
/// then read one by one over the whole range.
fn latest(
    store: &MetricsStore,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(std::sync::Arc<Labels>, Sample)> {
    let last = |samples: &[Sample]| samples.iter().rev().find(|x| !is_stale_nan(x.v)).copied();
    let recent_from = maxt.saturating_sub(3_600_000).max(mint);
    let mut out: Vec<(std::sync::Arc<Labels>, Sample)> = store
        .select(matchers, recent_from, maxt)
        .into_iter()
        .filter_map(|s| Some((s.labels.clone(), last(&s.samples)?)))
        .collect();
    if recent_from > mint {
        let found: std::collections::HashSet<std::sync::Arc<Labels>> =
            out.iter().map(|(l, _)| l.clone()).collect();
        for labels in store.series(&[matchers.to_vec()], mint, maxt) {
            if found.contains(&labels) {
                continue;
            }
            let exact: Vec<Matcher> = labels
                .iter()
                .map(|l| Matcher::equal(l.name, l.value))
                .collect();
            for s in store.select(&exact, mint, maxt) {
                if s.labels == labels {
                    if let Some(x) = last(&s.samples) {
                        out.push((s.labels, x));
                    }
                }
            }
        }
    }
    out
}

fn with_namespace(name: &str, filter: &Filter, label: &str) -> Vec<Matcher> {
    let mut m = vec![Matcher::equal("__name__", name)];
    if let Some(ns) = &filter.namespace {
        m.push(Matcher::equal(label, ns.clone()));
    }
    m
}

fn label(labels: &Labels, name: &str) -> String {
    labels.get(name).unwrap_or_default().to_string()
}

/// The workload a pod belongs to when only its name is known: Deployment
/// pods are `name-<rs hash>-<5>`, StatefulSet pods `name-<ordinal>`,
/// DaemonSet and Job pods `name-<5>`.
pub fn infer_owner(pod: &str) -> (String, String) {
    let parts: Vec<&str> = pod.split('-').collect();
    let alnum = |s: &str, lens: &[usize]| {
        lens.contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if parts.len() >= 3
        && alnum(parts[parts.len() - 1], &[5])
        && alnum(parts[parts.len() - 2], &[8, 9, 10])
    {
        return ("Deployment".into(), parts[..parts.len() - 2].join("-"));
    }
    if parts.len() >= 2 {
        let last = parts[parts.len() - 1];
        if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
            return ("StatefulSet".into(), parts[..parts.len() - 1].join("-"));
        }
        if alnum(last, &[5]) {
            return ("DaemonSet".into(), parts[..parts.len() - 1].join("-"));
        }
    }
    ("Pod".into(), pod.to_string())
}

/// Everything known about the cluster in `[mint, maxt]`.
pub struct Inventory {
    pub workloads: Vec<Workload>,
    /// (namespace, pod) → index into `workloads`.
    pub pod_owner: HashMap<(String, String), usize>,
    /// kube-state-metrics' `kube_pod_owner` was found.
    pub has_kube_state_metrics: bool,
}

pub fn load(
    store: &MetricsStore,
    names: &Names,
    filter: &Filter,
    mint: i64,
    maxt: i64,
) -> Inventory {
    let ns_label = names.namespace_label.as_str();
    // Containers with usage: (namespace, pod) → containers, last seen.
    let mut usage_pods: BTreeMap<(String, String), (BTreeSet<String>, i64)> = BTreeMap::new();
    for metric in [&names.cpu_usage, &names.memory_usage] {
        let mut m = with_namespace(metric, filter, ns_label);
        m.push(Matcher::not_equal(names.container_label.clone(), ""));
        m.push(Matcher::not_equal(names.container_label.clone(), "POD"));
        for (labels, last) in latest(store, &m, mint, maxt) {
            let key = (label(&labels, ns_label), label(&labels, &names.pod_label));
            if key.1.is_empty() {
                continue;
            }
            let entry = usage_pods.entry(key).or_default();
            entry.0.insert(label(&labels, &names.container_label));
            entry.1 = entry.1.max(last.t);
        }
    }

    // Owner chain.
    let owners = |metric: &str, child: &str| -> HashMap<(String, String), (String, String, i64)> {
        let mut out = HashMap::new();
        for (labels, last) in latest(
            store,
            &with_namespace(metric, filter, "namespace"),
            mint,
            maxt,
        ) {
            let key = (label(&labels, "namespace"), label(&labels, child));
            let value = (
                label(&labels, "owner_kind"),
                label(&labels, "owner_name"),
                last.t,
            );
            match out.get(&key) {
                Some((_, _, t)) if *t >= last.t => {}
                _ => {
                    out.insert(key, value);
                }
            }
        }
        out
    };
    let pod_owners = owners("kube_pod_owner", "pod");
    let rs_owners = owners("kube_replicaset_owner", "replicaset");
    let job_owners = owners("kube_job_owner", "job_name");
    let has_ksm = !pod_owners.is_empty();

    let mut pods: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (key, (_, t)) in &usage_pods {
        pods.insert(key.clone(), *t);
    }
    for (key, (_, _, t)) in &pod_owners {
        let e = pods.entry(key.clone()).or_insert(*t);
        *e = (*e).max(*t);
    }

    let mut index: HashMap<(String, String, String), usize> = HashMap::new();
    let mut workloads: Vec<Workload> = Vec::new();
    let mut pod_owner = HashMap::new();
    for ((ns, pod), last_seen) in &pods {
        let (kind, name, inferred) = match pod_owners.get(&(ns.clone(), pod.clone())) {
            Some((kind, name, _)) if kind == "ReplicaSet" => {
                match rs_owners.get(&(ns.clone(), name.clone())) {
                    Some((k, n, _)) if !k.is_empty() && k != "<none>" => {
                        (k.clone(), n.clone(), false)
                    }
                    _ => ("ReplicaSet".into(), name.clone(), false),
                }
            }
            Some((kind, name, _)) if kind == "Job" => match job_owners
                .get(&(ns.clone(), name.clone()))
            {
                Some((k, n, _)) if !k.is_empty() && k != "<none>" => (k.clone(), n.clone(), false),
                _ => ("Job".into(), name.clone(), false),
            },
            // Static pods are owned by their Node: each is its own workload.
            Some((kind, _, _)) if kind == "Node" => ("Pod".into(), pod.clone(), false),
            Some((kind, name, _)) if !kind.is_empty() && kind != "<none>" => {
                (kind.clone(), name.clone(), false)
            }
            Some(_) => ("Pod".into(), pod.clone(), false),
            None => {
                let (k, n) = infer_owner(pod);
                (k, n, true)
            }
        };
        if let Some(only) = &filter.workload {
            if &name != only {
                continue;
            }
        }
        let key = (ns.clone(), kind.clone(), name.clone());
        let i = *index.entry(key).or_insert_with(|| {
            workloads.push(Workload {
                namespace: ns.clone(),
                kind,
                name,
                pods: Vec::new(),
                containers: BTreeMap::new(),
                replicas: None,
                hpa: None,
                inferred,
            });
            workloads.len() - 1
        });
        workloads[i].pods.push(Pod {
            name: pod.clone(),
            deleted: *last_seen <= maxt - super::usage::LOOKBACK_MS,
        });
        if let Some((containers, _)) = usage_pods.get(&(ns.clone(), pod.clone())) {
            for c in containers {
                workloads[i].containers.entry(c.clone()).or_default();
            }
        }
        pod_owner.insert((ns.clone(), pod.clone()), i);
    }

    // Requests and limits: the newest value among a container's pods.
    for (metric, is_limit) in [
        ("kube_pod_container_resource_requests", false),
        ("kube_pod_container_resource_limits", true),
    ] {
        for (labels, last) in latest(
            store,
            &with_namespace(metric, filter, "namespace"),
            mint,
            maxt,
        ) {
            let key = (label(&labels, "namespace"), label(&labels, "pod"));
            let Some(&i) = pod_owner.get(&key) else {
                continue;
            };
            let c = workloads[i]
                .containers
                .entry(label(&labels, "container"))
                .or_default();
            let (slot, k) = match (labels.get("resource"), is_limit) {
                (Some("cpu"), false) => (&mut c.requests.cpu, 0),
                (Some("memory"), false) => (&mut c.requests.memory, 1),
                (Some("cpu"), true) => (&mut c.limits.cpu, 2),
                (Some("memory"), true) => (&mut c.limits.memory, 3),
                _ => continue,
            };
            if slot.is_none() || last.t >= c.seen[k] {
                *slot = Some(last.v);
                c.seen[k] = last.t;
            }
        }
    }

    // Replicas.
    let by_workload: HashMap<(String, String, String), usize> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (w.key(), i))
        .collect();
    for (metric, kind, name_label) in [
        ("kube_deployment_spec_replicas", "Deployment", "deployment"),
        ("kube_statefulset_replicas", "StatefulSet", "statefulset"),
    ] {
        for (labels, last) in latest(
            store,
            &with_namespace(metric, filter, "namespace"),
            mint,
            maxt,
        ) {
            let key = (
                label(&labels, "namespace"),
                kind.to_string(),
                label(&labels, name_label),
            );
            if let Some(&i) = by_workload.get(&key) {
                workloads[i].replicas = Some(last.v);
            }
        }
    }

    // HPAs, by their scale target.
    let hpa_values = |metric: &str| -> Vec<(std::sync::Arc<Labels>, Sample)> {
        latest(
            store,
            &with_namespace(metric, filter, "namespace"),
            mint,
            maxt,
        )
    };
    let mut hpas: HashMap<(String, String), Hpa> = HashMap::new();
    let mut targets: HashMap<(String, String), (String, String)> = HashMap::new();
    for (labels, _) in hpa_values("kube_horizontalpodautoscaler_info") {
        let key = (
            label(&labels, "namespace"),
            label(&labels, "horizontalpodautoscaler"),
        );
        targets.insert(
            key.clone(),
            (
                label(&labels, "scaletargetref_kind"),
                label(&labels, "scaletargetref_name"),
            ),
        );
        hpas.insert(
            key.clone(),
            Hpa {
                name: key.1.clone(),
                min_replicas: None,
                max_replicas: None,
                current_replicas: None,
                desired_replicas: None,
                target_cpu_utilization_percentage: None,
                target_memory_utilization_percentage: None,
            },
        );
    }
    for (metric, field) in [
        ("kube_horizontalpodautoscaler_spec_min_replicas", 0),
        ("kube_horizontalpodautoscaler_spec_max_replicas", 1),
        ("kube_horizontalpodautoscaler_status_current_replicas", 2),
        ("kube_horizontalpodautoscaler_status_desired_replicas", 3),
        ("kube_horizontalpodautoscaler_spec_target_metric", 4),
    ] {
        for (labels, last) in hpa_values(metric) {
            let key = (
                label(&labels, "namespace"),
                label(&labels, "horizontalpodautoscaler"),
            );
            let Some(h) = hpas.get_mut(&key) else {
                continue;
            };
            match field {
                0 => h.min_replicas = Some(last.v),
                1 => h.max_replicas = Some(last.v),
                2 => h.current_replicas = Some(last.v),
                3 => h.desired_replicas = Some(last.v),
                _ => {
                    if labels.get("metric_target_type") != Some("utilization") {
                        continue;
                    }
                    match labels.get("metric_name") {
                        Some("cpu") => h.target_cpu_utilization_percentage = Some(last.v),
                        Some("memory") => h.target_memory_utilization_percentage = Some(last.v),
                        _ => {}
                    }
                }
            }
        }
    }
    for (key, hpa) in hpas {
        let Some((kind, name)) = targets.get(&key) else {
            continue;
        };
        if let Some(&i) = by_workload.get(&(key.0.clone(), kind.clone(), name.clone())) {
            workloads[i].hpa = Some(hpa);
        }
    }

    for w in &mut workloads {
        if w.replicas.is_none() {
            let live = w.pods.iter().filter(|p| !p.deleted).count();
            w.replicas = Some(live as f64);
        }
        w.containers
            .retain(|name, _| !name.is_empty() && name != "POD");
    }
    workloads.retain(|w| !w.containers.is_empty());
    let pod_owner = workloads
        .iter()
        .enumerate()
        .flat_map(|(i, w)| {
            w.pods
                .iter()
                .map(move |p| ((w.namespace.clone(), p.name.clone()), i))
        })
        .collect();
    Inventory {
        workloads,
        pod_owner,
        has_kube_state_metrics: has_ksm,
    }
}

#[cfg(test)]
mod tests {
    use super::infer_owner;

    #[test]
    fn owners_from_pod_names() {
        assert_eq!(
            infer_owner("web-7d9f8b6c4d-x2k9p"),
            ("Deployment".into(), "web".into())
        );
        assert_eq!(infer_owner("db-0"), ("StatefulSet".into(), "db".into()));
        assert_eq!(
            infer_owner("node-agent-abcde"),
            ("DaemonSet".into(), "node-agent".into())
        );
        assert_eq!(infer_owner("solo"), ("Pod".into(), "solo".into()));
    }
}

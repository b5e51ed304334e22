//! Ready-to-apply YAML: a strategic-merge patch of a container's
//! `resources` (`kubectl patch <kind> <name> -n <ns> --patch-file p.yaml`)
//! and an `autoscaling/v2` HorizontalPodAutoscaler where one is advised.

use std::fmt::Write;

use super::hpa::Advice;
use super::inventory::{Container, Workload};
use super::strategy::{Amount, Outcome, MIB};

/// Kubernetes quantity for cores: whole cores, else millicores.
pub fn cpu_quantity(cores: f64) -> String {
    let m = (cores * 1000.0).round() as i64;
    if m % 1000 == 0 {
        format!("{}", m / 1000)
    } else {
        format!("{m}m")
    }
}

/// Kubernetes quantity for bytes: Gi or Mi when whole, else bytes.
pub fn memory_quantity(bytes: f64) -> String {
    let b = bytes.round() as i64;
    let mib = MIB as i64;
    if b % (1024 * mib) == 0 && b > 0 {
        format!("{}Gi", b / (1024 * mib))
    } else if b % mib == 0 {
        format!("{}Mi", b / mib)
    } else {
        format!("{b}")
    }
}

fn line(
    out: &mut String,
    indent: usize,
    key: &str,
    amount: Amount,
    current: Option<f64>,
    cpu: bool,
) {
    let value = match amount {
        Amount::Value(v) if cpu => cpu_quantity(v),
        Amount::Value(v) => memory_quantity(v),
        // Unset while set today: remove it.
        Amount::Unset if current.is_some() => "null".into(),
        _ => return,
    };
    let _ = writeln!(out, "{:indent$}{key}: {value}", "");
}

/// The resources patch; `None` when nothing is known.
pub fn resources_patch(
    w: &Workload,
    container: &str,
    o: &Outcome,
    current: &Container,
) -> Option<String> {
    let mut requests = String::new();
    line(
        &mut requests,
        12,
        "cpu",
        o.cpu.request,
        current.requests.cpu,
        true,
    );
    line(
        &mut requests,
        12,
        "memory",
        o.memory.request,
        current.requests.memory,
        false,
    );
    let mut limits = String::new();
    line(
        &mut limits,
        12,
        "cpu",
        o.cpu.limit,
        current.limits.cpu,
        true,
    );
    line(
        &mut limits,
        12,
        "memory",
        o.memory.limit,
        current.limits.memory,
        false,
    );
    if requests.is_empty() && limits.is_empty() {
        return None;
    }
    // Where the pod template lives; Jobs, bare Pods and others cannot be
    // patched in place (their pod specs are immutable).
    let path: &[&str] = match w.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    };
    let mut out = format!(
        "# kubectl patch {} {} -n {} --patch-file this.yaml\n",
        w.kind.to_lowercase(),
        w.name,
        w.namespace
    );
    for (depth, key) in path.iter().enumerate() {
        let _ = writeln!(out, "{:width$}{key}:", "", width = depth * 2);
    }
    let base = path.len() * 2;
    let _ = writeln!(out, "{:base$}containers:", "");
    let _ = writeln!(out, "{:base$}- name: {container}", "");
    let _ = writeln!(out, "{:width$}resources:", "", width = base + 2);
    let reindent = |block: &str| -> String {
        block
            .lines()
            .map(|l| format!("{:width$}{}\n", "", l.trim_start(), width = base + 6))
            .collect()
    };
    if !requests.is_empty() {
        let _ = writeln!(out, "{:width$}requests:", "", width = base + 4);
        out.push_str(&reindent(&requests));
    }
    if !limits.is_empty() {
        let _ = writeln!(out, "{:width$}limits:", "", width = base + 4);
        out.push_str(&reindent(&limits));
    }
    Some(out)
}

/// An HPA manifest when autoscaling is advised.
pub fn hpa(w: &Workload, advice: &Advice) -> Option<String> {
    // A workload with an HPA gets advice on its bounds, not a second HPA.
    if !advice.autoscale || w.hpa.is_some() {
        return None;
    }
    let api = match w.kind.as_str() {
        "Deployment" | "StatefulSet" | "ReplicaSet" => "apps/v1",
        _ => return None,
    };
    Some(format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  scaleTargetRef:\n    apiVersion: {api}\n    kind: {kind}\n    name: {name}\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: {target}\n",
        name = w.name,
        ns = w.namespace,
        kind = w.kind,
        min = advice.min_replicas.unwrap_or(1),
        max = advice.max_replicas.unwrap_or(1),
        target = advice.target_utilization_percentage.round() as i64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(0.25), "250m");
        assert_eq!(cpu_quantity(2.0), "2");
        assert_eq!(memory_quantity(300.0 * MIB), "300Mi");
        assert_eq!(memory_quantity(2048.0 * MIB), "2Gi");
    }
}

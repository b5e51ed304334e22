//! The Recommendations page: every workload container with today's and the
//! recommended requests and limits, sorted by severity and then by how
//! much applying them would change (freed or added), and for a chosen workload charts of its usage with
//! the request and limit lines and the HPA replay (drawn by app.js from
//! `/api/v1/recommendations/chart`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::render;
use crate::api::params::Params;
use crate::api::AppState;
use crate::recommend::manifest::{cpu_quantity, memory_quantity};
use crate::recommend::strategy::Amount;

struct Row {
    namespace: String,
    kind: String,
    name: String,
    container: String,
    pods: usize,
    cpu_request: String,
    cpu_limit: String,
    memory_request: String,
    memory_limit: String,
    severity: &'static str,
    backtest: String,
    passed: bool,
    tested: bool,
    saving: String,
    hpa: String,
    info: String,
    link: String,
    patch: String,
    sort_key: (f64, u8),
}

struct NamespaceRow {
    namespace: String,
    requests: String,
    quota: String,
    quota_now: String,
    default_request: String,
}

struct ShapeRow {
    shape: String,
    today: String,
    needed_now: String,
    needed_after: String,
    saved: String,
}

#[derive(Template)]
#[template(path = "recommendations.html")]
struct Page {
    namespaces: Vec<NamespaceRow>,
    shapes: Vec<ShapeRow>,
    nodes_note: String,
    nav: &'static str,
    strategies: Vec<String>,
    strategy: String,
    window: String,
    namespace: String,
    time: String,
    error: String,
    notes: Vec<String>,
    rows: Vec<Row>,
    workloads: usize,
    duration: String,
    chart_url: String,
    chart_title: String,
    total_cpu: String,
    total_memory: String,
}

fn cpu(now: Option<f64>, rec: Amount) -> String {
    let now = now.map_or("unset".to_string(), cpu_quantity);
    let rec = match rec {
        Amount::Unknown => "?".to_string(),
        Amount::Unset => "unset".to_string(),
        Amount::Value(v) => cpu_quantity(v),
    };
    if now == rec {
        now
    } else {
        format!("{now} → {rec}")
    }
}

fn memory(now: Option<f64>, rec: Amount) -> String {
    let q = |b: f64| memory_quantity((b / 1048576.0).ceil() * 1048576.0);
    let now = now.map_or("unset".to_string(), q);
    let rec = match rec {
        Amount::Unknown => "?".to_string(),
        Amount::Unset => "unset".to_string(),
        Amount::Value(v) => q(v),
    };
    if now == rec {
        now
    } else {
        format!("{now} → {rec}")
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "CRITICAL" => 4,
        "WARNING" => 3,
        "OK" => 2,
        "GOOD" => 1,
        _ => 0,
    }
}

pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let config = &state.config.recommendations;
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let mut page = Page {
        nav: "recommendations",
        namespaces: Vec::new(),
        shapes: Vec::new(),
        nodes_note: String::new(),
        strategies: ["simple", "simple_limit", "vpa"].map(String::from).to_vec(),
        strategy: query
            .get("strategy")
            .cloned()
            .unwrap_or_else(|| config.strategy.clone()),
        window: query
            .get("window")
            .cloned()
            .unwrap_or_else(|| humantime::format_duration(config.window).to_string()),
        namespace: get("namespace"),
        time: get("time"),
        error: String::new(),
        notes: Vec::new(),
        rows: Vec::new(),
        workloads: 0,
        duration: String::new(),
        chart_url: String::new(),
        chart_title: String::new(),
        total_cpu: String::new(),
        total_memory: String::new(),
    };
    let pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| ["strategy", "window", "namespace", "time", "step"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let encoded = |extra: &[(&str, &str)]| -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            s.append_pair(k, v);
        }
        s.finish()
    };
    let params = Params::from_pairs(pairs.clone());
    let request = match crate::api::recommendations::request_from(&params, config) {
        Ok(r) => r,
        Err(message) => {
            page.error = message;
            return render(page);
        }
    };
    let report = match crate::api::recommendations::run(&state, request).await {
        Ok(r) => r,
        Err((_, _, message)) => {
            page.error = message;
            return render(page);
        }
    };
    let store = state.store.clone();
    let (report, namespaces, nodes) = match tokio::task::spawn_blocking(move || {
        let namespaces = crate::recommend::cluster::namespaces(&store, &report);
        let nodes = crate::recommend::cluster::nodes(&store, &report);
        (report, namespaces, nodes)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            page.error = e.to_string();
            return render(page);
        }
    };
    let num = |v: &serde_json::Value| v.as_f64();
    // Cores as people read them: millicores below one core, else decimals.
    let cores = |v: &serde_json::Value| {
        num(v).map_or("–".to_string(), |c| {
            if c < 1.0 {
                cpu_quantity(c)
            } else {
                format!("{}", (c * 100.0).round() / 100.0)
            }
        })
    };
    let bytes = |v: &serde_json::Value| {
        num(v).map_or("–".to_string(), |b| {
            memory_quantity((b / 1048576.0).ceil() * 1048576.0)
        })
    };
    for n in namespaces["namespaces"].as_array().into_iter().flatten() {
        let q = &n["resource_quota"];
        let now = n["current_resource_quota"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        page.namespaces.push(NamespaceRow {
            namespace: n["namespace"].as_str().unwrap_or_default().to_string(),
            requests: format!(
                "{} CPU · {}",
                cores(&n["recommended_requests"]["cpu"]),
                bytes(&n["recommended_requests"]["memory"])
            ),
            quota: format!(
                "requests.cpu {} · requests.memory {} · limits.memory {}",
                cores(&q["requests.cpu"]),
                bytes(&q["requests.memory"]),
                bytes(&q["limits.memory"])
            ),
            quota_now: if now.is_empty() { "none".into() } else { now },
            default_request: format!(
                "{} · {}",
                cores(&n["limit_range"]["defaultRequest"]["cpu"]),
                bytes(&n["limit_range"]["defaultRequest"]["memory"])
            ),
        });
    }
    for shape in nodes["shapes"].as_array().into_iter().flatten() {
        page.shapes.push(ShapeRow {
            shape: format!(
                "{} CPU · {}",
                cores(&shape["allocatable"]["cpu"]),
                bytes(&shape["allocatable"]["memory"])
            ),
            today: shape["nodes_today"].to_string(),
            needed_now: shape["needed_with_todays_requests"].to_string(),
            needed_after: shape["needed_with_recommended_requests"].to_string(),
            saved: shape["nodes_saved"].to_string(),
        });
    }
    page.nodes_note = nodes["method"].as_str().unwrap_or_default().to_string();
    page.notes = report.notes.clone();
    page.workloads = report.workloads.len();
    page.duration = format!("{:.0} ms", report.duration.as_secs_f64() * 1000.0);
    let (mut cores, mut bytes) = (0.0, 0.0);
    for r in &report.results {
        for c in &r.containers {
            let w = &report.workloads[c.workload];
            let now = &w.containers[&c.container];
            let severity = crate::recommend::strategy::worst(c.severity.values().copied());
            cores += c.saving.cpu_cores.unwrap_or(0.0);
            bytes += c.saving.memory_bytes.unwrap_or(0.0);
            let saving = match (c.saving.cpu_cores, c.saving.memory_bytes) {
                (None, None) => "–".to_string(),
                (cpu, mem) => format!(
                    "{} cores · {}",
                    cpu.map_or("?".into(), |v| format!("{v:.2}")),
                    mem.map_or("?".into(), |v| format!("{:.0} MiB", v / 1048576.0))
                ),
            };
            let hpa = if r.hpa.current_hpa_replay.is_some() {
                r.hpa.reason.clone()
            } else if r.hpa.autoscale {
                format!(
                    "advise HPA {}–{} replicas",
                    r.hpa.min_replicas.unwrap_or(0),
                    r.hpa.max_replicas.unwrap_or(0)
                )
            } else if let Some(replay) = &r.hpa.current_hpa_replay {
                format!("HPA: {}", replay.verdict)
            } else {
                String::new()
            };
            let mut info: Vec<String> = [&c.outcome.cpu.info, &c.outcome.memory.info]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            info.dedup();
            page.rows.push(Row {
                namespace: w.namespace.clone(),
                kind: w.kind.clone(),
                name: w.name.clone(),
                container: c.container.clone(),
                pods: w.pods.len(),
                cpu_request: cpu(now.requests.cpu, c.outcome.cpu.request),
                cpu_limit: cpu(now.limits.cpu, c.outcome.cpu.limit),
                memory_request: memory(now.requests.memory, c.outcome.memory.request),
                memory_limit: memory(now.limits.memory, c.outcome.memory.limit),
                severity,
                backtest: c.backtest.verdict.clone(),
                passed: c.backtest.passed,
                tested: c.backtest.tested,
                saving,
                hpa,
                info: info.join("; "),
                link: format!(
                    "/ui/recommendations?{}#chart",
                    encoded(&[("show", &format!("{}/{}/{}", w.namespace, w.kind, w.name))])
                ),
                patch: crate::recommend::manifest::resources_patch(
                    w,
                    &c.container,
                    &c.outcome,
                    now,
                )
                .unwrap_or_default(),
                sort_key: (
                    c.saving.cpu_cores.unwrap_or(0.0).abs()
                        + c.saving.memory_bytes.unwrap_or(0.0).abs() / (4.0 * 1024.0 * 1048576.0),
                    severity_rank(severity),
                ),
            });
        }
    }
    page.rows.sort_by(|a, b| {
        b.sort_key
            .1
            .cmp(&a.sort_key.1)
            .then(b.sort_key.0.total_cmp(&a.sort_key.0))
            .then(a.name.cmp(&b.name))
    });
    page.total_cpu = format!("{cores:.2}");
    page.total_memory = format!("{:.2}", bytes / (1024.0 * 1048576.0));
    let show = get("show");
    let mut parts = show.splitn(3, '/');
    if let (Some(ns), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) {
        page.chart_title = format!("{ns} / {kind} {name}");
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            if k != "namespace" && !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.append_pair("namespace", ns);
        s.append_pair("kind", kind);
        s.append_pair("workload", name);
        page.chart_url = format!("/api/v1/recommendations/chart?{}", s.finish());
    }
    render(page)
}

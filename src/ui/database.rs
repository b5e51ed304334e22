//! The Database advice page: the findings of `recommend::database` (each
//! with links to its example traces) and the query templates, for a
//! service and a range.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::Value;

use super::{pick_range, range_ms, render, RANGES};
use crate::api::AppState;
use crate::recommend::database::{self, DbRequest};

struct Finding {
    kind: String,
    template: String,
    advice: String,
    figures: String,
    per_hour: String,
    traces: Vec<String>,
}

struct TemplateRow {
    template: String,
    system: String,
    calls: u64,
    total: String,
    mean: String,
    p95: String,
    share: String,
    per_trace: String,
    endpoints: String,
}

struct CacheRow {
    template: String,
    reads: u64,
    distinct: u64,
    achievable: String,
    ttl: String,
    saved: String,
    /// The hit-ratio curve as JSON for the chart: [[entries, ratio], …].
    curve: String,
}

struct RedisRow {
    pattern: String,
    gets: u64,
    hit_ratio: String,
    never_read: u64,
}

#[derive(Template)]
#[template(path = "database.html")]
struct Page {
    cache: Vec<CacheRow>,
    redis: Vec<RedisRow>,
    nav: &'static str,
    service: String,
    ranges: Vec<String>,
    range: String,
    error: String,
    notes: Vec<String>,
    db_calls: u64,
    http_calls: u64,
    db_time: String,
    findings: Vec<Finding>,
    templates: Vec<TemplateRow>,
}

fn ms(v: &Value) -> String {
    let ms = v.as_f64().unwrap_or(0.0);
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.2} ms")
    }
}

pub async fn page(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let range = pick_range(&params);
    let service = params.get("service").cloned().unwrap_or_default();
    let mut page = Page {
        nav: "recommendations",
        cache: Vec::new(),
        redis: Vec::new(),
        service: service.clone(),
        ranges: RANGES.iter().map(|r| r.to_string()).collect(),
        range: range.clone(),
        error: String::new(),
        notes: Vec::new(),
        db_calls: 0,
        http_calls: 0,
        db_time: String::new(),
        findings: Vec::new(),
        templates: Vec::new(),
    };
    let end_ms = crate::now_ms();
    let request = DbRequest {
        start_ns: end_ms
            .saturating_sub(range_ms(&range))
            .saturating_mul(1_000_000),
        end_ns: end_ms.saturating_mul(1_000_000),
        service: (!service.is_empty()).then_some(service),
    };
    let Some(slot) = state.query_slot().await else {
        page.error = "shutting down".into();
        return render(page);
    };
    let store = state.traces.store.clone();
    let options = state.config.recommendations.db_options();
    let cache_options = state.config.recommendations.cache_options();
    let both = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let db = database::analyse(&store, &options, &request)?;
        let cache = crate::recommend::cache::analyse(&store, &cache_options, &request)?;
        Ok::<_, String>((db, cache))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let (report, cache) = match both {
        Ok(r) => r,
        Err(e) => {
            page.error = e;
            return render(page);
        }
    };
    for c in cache["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .take(20)
    {
        let curve: Vec<(u64, Option<f64>)> = c["curve"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["entries"].as_u64().unwrap_or(0), p["hit_ratio"].as_f64()))
            .collect();
        page.cache.push(CacheRow {
            template: c["template"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
            reads: c["reads"].as_u64().unwrap_or(0),
            distinct: c["distinct_keys"].as_u64().unwrap_or(0),
            achievable: format!(
                "{:.1} %{}",
                c["achievable_hit_ratio"].as_f64().unwrap_or(0.0) * 100.0,
                if c["keyed"] == "exact" {
                    ""
                } else {
                    " (upper bound)"
                }
            ),
            ttl: c["advised_ttl_seconds"]
                .as_f64()
                .map_or("–".into(), |t| format!("{t} s")),
            saved: format!(
                "{:.2} s",
                c["db_time_saved_per_hour_seconds"].as_f64().unwrap_or(0.0)
            ),
            curve: serde_json::to_string(&curve).unwrap_or_default(),
        });
    }
    for r in cache["redis"].as_array().into_iter().flatten() {
        page.redis.push(RedisRow {
            pattern: r["pattern"].as_str().unwrap_or("").to_string(),
            gets: r["gets"].as_u64().unwrap_or(0),
            hit_ratio: format!("{:.1} %", r["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0),
            never_read: r["keys_written_never_read"].as_u64().unwrap_or(0),
        });
    }
    page.db_calls = report["db_calls"].as_u64().unwrap_or(0);
    page.http_calls = report["http_calls"].as_u64().unwrap_or(0);
    page.db_time = format!("{:.2} s", report["db_time_seconds"].as_f64().unwrap_or(0.0));
    page.notes = report["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    for f in report["findings"].as_array().into_iter().flatten() {
        let kind = f["kind"].as_str().unwrap_or("").to_string();
        let figures = match kind.as_str() {
            "slow_query" => format!("{} calls, p95 {}", f["calls"], ms(&f["p95_ms"])),
            "index_candidate" => f["statement"].as_str().unwrap_or("").to_string(),
            _ => format!(
                "{} times, {:.0} calls each, {} each",
                f["occurrences"],
                f["calls_per_occurrence"].as_f64().unwrap_or(0.0),
                ms(&f["time_per_occurrence_ms"])
            ),
        };
        page.findings.push(Finding {
            kind: kind.replace('_', " "),
            template: f["template"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(400)
                .collect(),
            advice: f["advice"].as_str().unwrap_or("").to_string(),
            figures,
            per_hour: format!(
                "{:.2} s",
                f["time_per_hour_seconds"].as_f64().unwrap_or(0.0)
            ),
            traces: f["example_trace_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(String::from))
                .filter(|t| t.len() == 32)
                .collect(),
        });
    }
    for t in report["templates"]
        .as_array()
        .into_iter()
        .flatten()
        .take(100)
    {
        page.templates.push(TemplateRow {
            template: t["template"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(400)
                .collect(),
            system: t["system"].as_str().unwrap_or("").to_string(),
            calls: t["calls"].as_u64().unwrap_or(0),
            total: ms(&t["total_ms"]),
            mean: ms(&t["mean_ms"]),
            p95: ms(&t["p95_ms"]),
            share: format!(
                "{:.1} %",
                t["share_of_db_time"].as_f64().unwrap_or(0.0) * 100.0
            ),
            per_trace: format!("{:.1}", t["calls_per_trace"].as_f64().unwrap_or(0.0)),
            endpoints: t["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .take(3)
                .filter_map(|e| e["endpoint"].as_str().map(String::from))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    render(page)
}

//! `/api/v1/rules`, `/api/v1/alerts`, `/api/v1/alertmanagers` in
//! Prometheus' shapes (Grafana's alerting view of a Prometheus data source
//! reads them), and `POST /-/reload`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

use super::params::Params;
use super::prometheus::success;
use super::query::bad_data;
use super::AppState;
use crate::rules::file::RuleKind;
use crate::rules::{self, Alert, AlertState, RuleState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rules", get(list_rules).post(list_rules))
        .route("/api/v1/alerts", get(list_alerts).post(list_alerts))
        .route("/api/v1/alertmanagers", get(alertmanagers))
        .route("/-/reload", post(reload).put(reload))
}

fn alert_json(alert: &Alert) -> Value {
    json!({
        "labels": alert.labels,
        "annotations": alert.annotations,
        "state": alert.state.as_str(),
        "activeAt": rules::rfc3339(alert.active_at),
        "value": rules::format_value_e(alert.value),
    })
}

/// Alerts the API shows: pending and firing (resolved ones are kept only
/// for re-sending).
fn shown(rule: &RuleState) -> impl Iterator<Item = &Alert> {
    rule.active
        .values()
        .filter(|a| a.state != AlertState::Inactive)
}

async fn list_rules(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::from_request(&method, raw.as_deref(), &headers, &body);
    let kind = match params.get("type").map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("alert") => Some(true),
        Some("record") => Some(false),
        Some(other) => {
            return bad_data(format!(
                "invalid rule type {other:?}: must be alert or record"
            ))
        }
    };
    let names: Vec<&str> = params.all("rule_name[]").collect();
    let groups_wanted: Vec<&str> = params.all("rule_group[]").collect();
    let files: Vec<&str> = params.all("file[]").collect();
    let exclude_alerts = params.get("exclude_alerts") == Some("true");
    let mut groups = Vec::new();
    for (group, snapshot) in rules::snapshot(&state.rules.groups()) {
        let file = group.spec.file.display().to_string();
        if (!groups_wanted.is_empty() && !groups_wanted.contains(&group.spec.name.as_str()))
            || (!files.is_empty() && !files.contains(&file.as_str()))
        {
            continue;
        }
        let mut rules_json = Vec::new();
        for rule in &snapshot.rules {
            if kind.is_some_and(|alert| alert != rule.spec.is_alert())
                || (!names.is_empty() && !names.contains(&rule.spec.name.as_str()))
            {
                continue;
            }
            let last = rule
                .last_evaluation_ms
                .map(rules::rfc3339)
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            let mut r = match &rule.spec.kind {
                RuleKind::Record => json!({
                    "name": rule.spec.name,
                    "query": rule.spec.expr,
                    "labels": rule.spec.labels,
                    "health": rule.health.as_str(),
                    "evaluationTime": rule.evaluation_seconds,
                    "lastEvaluation": last,
                    "type": "recording",
                }),
                RuleKind::Alert {
                    for_,
                    keep_firing_for,
                    annotations,
                } => {
                    let mut r = json!({
                        "state": rule.state().as_str(),
                        "name": rule.spec.name,
                        "query": rule.spec.expr,
                        "duration": for_.as_secs(),
                        "keepFiringFor": keep_firing_for.as_secs(),
                        "labels": rule.spec.labels,
                        "annotations": annotations,
                        "health": rule.health.as_str(),
                        "evaluationTime": rule.evaluation_seconds,
                        "lastEvaluation": last,
                        "type": "alerting",
                    });
                    if !exclude_alerts {
                        r["alerts"] = Value::Array(shown(rule).map(alert_json).collect());
                    }
                    r
                }
            };
            if !rule.last_error.is_empty() {
                r["lastError"] = Value::String(rule.last_error.clone());
            }
            rules_json.push(r);
        }
        if (kind.is_some() || !names.is_empty()) && rules_json.is_empty() {
            continue;
        }
        groups.push(json!({
            "name": group.spec.name,
            "file": file,
            "rules": rules_json,
            "interval": group.interval.as_secs_f64(),
            "limit": group.spec.limit,
            "evaluationTime": snapshot.evaluation_seconds,
            "lastEvaluation": snapshot
                .last_evaluation_ms
                .map(rules::rfc3339)
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        }));
    }
    success(json!({ "groups": groups }))
}

async fn list_alerts(State(state): State<AppState>) -> Response {
    let mut alerts = Vec::new();
    for (_, snapshot) in rules::snapshot(&state.rules.groups()) {
        for rule in &snapshot.rules {
            alerts.extend(shown(rule).map(alert_json));
        }
    }
    success(json!({ "alerts": alerts }))
}

async fn alertmanagers(State(state): State<AppState>) -> Response {
    let active: Vec<Value> = state
        .rules
        .notifier()
        .targets()
        .iter()
        .map(|url| json!({ "url": url }))
        .collect();
    success(json!({"activeAlertmanagers": active, "droppedAlertmanagers": []}))
}

/// Re-read the rule files; a broken file keeps the old rules and answers
/// 500 with the problems, as Prometheus' `/-/reload` does.
async fn reload(State(state): State<AppState>) -> Response {
    let manager = state.rules.clone();
    // Reading files is blocking work; spawning group tasks needs the runtime.
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        manager.reload()
    })
    .await;
    match result {
        Ok(Ok(groups)) => {
            (StatusCode::OK, format!("reloaded {groups} rule groups\n")).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}

//! The Alerts and Rules pages: alerting rules with their alerts and recent
//! state changes, and every group with its rules' health.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::render;
use crate::api::AppState;
use crate::rules::file::RuleKind;
use crate::rules::{self, AlertState};

fn time(ms: i64) -> String {
    crate::model::log::format_timestamp_ms(ms.saturating_mul(1_000_000))
}

fn seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

fn value(v: f64) -> String {
    rules::template::go_g(v, None)
}

/// Where a rule's expression is explored: the logs page for a log rule
/// (its Lucene query), the metrics explorer otherwise.
pub fn expression_link(expr: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    if let Some(at) = expr.find(rules::logsource::LOG_RECORDS) {
        let rest = &expr[at..];
        if let Some(start) = rest.find("query=\"") {
            let body = &rest[start + 7..];
            let mut query = String::new();
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => query.extend(chars.next()),
                    '"' => return format!("/ui/logs?query={}", encode(&query)),
                    c => query.push(c),
                }
            }
        }
    }
    format!("/ui/metrics?query={}", encode(expr))
}

struct AlertRow {
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    state: &'static str,
    active_at: String,
    value: String,
}

struct HistoryRow {
    at: String,
    from: &'static str,
    to: &'static str,
    value: String,
    labels: Vec<(String, String)>,
}

struct AlertRule {
    name: String,
    group: String,
    state: &'static str,
    expr: String,
    link: String,
    for_: String,
    error: String,
    alerts: Vec<AlertRow>,
    history: Vec<HistoryRow>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: &'static str,
    firing: usize,
    pending: usize,
    inactive: usize,
    rules: Vec<AlertRule>,
}

pub async fn alerts(State(state): State<AppState>) -> Response {
    let mut page = AlertsPage {
        nav: "alerts",
        firing: 0,
        pending: 0,
        inactive: 0,
        rules: Vec::new(),
    };
    for (group, snapshot) in rules::snapshot(&state.rules.groups()) {
        for rule in &snapshot.rules {
            let RuleKind::Alert { for_, .. } = &rule.spec.kind else {
                continue;
            };
            let rule_state = rule.state();
            match rule_state {
                AlertState::Firing => page.firing += 1,
                AlertState::Pending => page.pending += 1,
                AlertState::Inactive => page.inactive += 1,
            }
            let without_name = |labels: &std::collections::BTreeMap<String, String>| {
                labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "alertname")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            };
            page.rules.push(AlertRule {
                name: rule.spec.name.clone(),
                group: group.spec.name.clone(),
                state: rule_state.as_str(),
                expr: rule.spec.expr.clone(),
                link: expression_link(&rule.spec.expr),
                for_: if for_.is_zero() {
                    String::new()
                } else {
                    humantime::format_duration(*for_).to_string()
                },
                error: rule.last_error.clone(),
                alerts: rule
                    .active
                    .values()
                    .filter(|a| a.state != AlertState::Inactive)
                    .map(|a| AlertRow {
                        labels: without_name(&a.labels),
                        annotations: a.annotations.clone().into_iter().collect(),
                        state: a.state.as_str(),
                        active_at: time(a.active_at),
                        value: value(a.value),
                    })
                    .collect(),
                history: rule
                    .history
                    .iter()
                    .take(20)
                    .map(|h| HistoryRow {
                        at: time(h.at_ms),
                        from: h.from.as_str(),
                        to: h.to.as_str(),
                        value: value(h.value),
                        labels: without_name(&h.labels),
                    })
                    .collect(),
            });
        }
    }
    // Firing first, then pending, then the rest, each by name.
    page.rules.sort_by_key(|r| {
        let rank = match r.state {
            "firing" => 0,
            "pending" => 1,
            _ => 2,
        };
        (rank, r.name.clone())
    });
    render(page)
}

struct RuleRow {
    name: String,
    kind: &'static str,
    expr: String,
    link: String,
    health: &'static str,
    last: String,
    duration: String,
    error: String,
}

struct GroupRow {
    name: String,
    file: String,
    interval: String,
    limit: usize,
    last: String,
    duration: String,
    rules: Vec<RuleRow>,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    nav: &'static str,
    reload_error: Option<String>,
    groups: Vec<GroupRow>,
}

pub async fn rules_page(State(state): State<AppState>) -> Response {
    let never = || "never".to_owned();
    let groups = rules::snapshot(&state.rules.groups())
        .into_iter()
        .map(|(group, snapshot)| GroupRow {
            name: group.spec.name.clone(),
            file: group.spec.file.display().to_string(),
            interval: humantime::format_duration(group.interval).to_string(),
            limit: group.spec.limit,
            last: snapshot.last_evaluation_ms.map_or_else(never, time),
            duration: seconds(snapshot.evaluation_seconds),
            rules: snapshot
                .rules
                .iter()
                .map(|r| RuleRow {
                    name: r.spec.name.clone(),
                    kind: if r.spec.is_alert() {
                        "alerting"
                    } else {
                        "recording"
                    },
                    expr: r.spec.expr.clone(),
                    link: expression_link(&r.spec.expr),
                    health: r.health.as_str(),
                    last: r.last_evaluation_ms.map_or_else(never, time),
                    duration: seconds(r.evaluation_seconds),
                    error: r.last_error.clone(),
                })
                .collect(),
        })
        .collect();
    render(RulesPage {
        nav: "rules",
        reload_error: state.rules.last_reload_error.lock().clone(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_rules_link_to_the_logs_page() {
        assert_eq!(
            super::expression_link(
                r#"oxeye_log_records{query="level:error AND msg:\"x\"", window="5m"} > 2"#
            ),
            "/ui/logs?query=level%3Aerror+AND+msg%3A%22x%22"
        );
        assert_eq!(
            super::expression_link("up == 0"),
            "/ui/metrics?query=up+%3D%3D+0"
        );
    }
}

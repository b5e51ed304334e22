//! `oxeye recommend workloads|database|cache --url URL …`: asks a running
//! server and prints its answer as a table, JSON (KRR's shape for
//! workloads), YAML or CSV.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::manifest::{cpu_quantity, memory_quantity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Csv,
}

/// Which recommendations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Workloads,
    Database,
    Cache,
}

impl What {
    /// The command's and the endpoint's name.
    pub fn name(self) -> &'static str {
        match self {
            What::Workloads => "workloads",
            What::Database => "database",
            What::Cache => "cache",
        }
    }
}

/// How to reach the server and print its answer (every `oxeye recommend`
/// command takes these).
#[derive(Debug, Clone, clap::Args)]
pub struct Server {
    /// The Oxeye server, e.g. http://127.0.0.1:9090.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub url: String,
    #[arg(long, short, value_enum, default_value = "table")]
    pub format: Format,
    /// Bearer token ([[auth.tokens]]); also from OXEYE_TOKEN.
    #[arg(long, env = "OXEYE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Largest answer read from the server.
const MAX_RESPONSE: usize = 512 * 1024 * 1024;

/// Asks the server for `what` with the given query parameters (unset ones
/// left out) and renders the answer in `server.format`.
pub fn run(
    server: &Server,
    what: What,
    params: &[(&str, Option<String>)],
) -> Result<String, String> {
    let report = fetch(server, what, params)?;
    match what {
        What::Workloads => render(&report, server.format),
        What::Database => render_database(&report, server.format),
        What::Cache => render_cache(&report, server.format),
    }
}

/// Fetches the report.
fn fetch(server: &Server, what: What, params: &[(&str, Option<String>)]) -> Result<Value, String> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        if let Some(v) = value {
            query.append_pair(key, v);
        }
    }
    let path = format!("/api/v1/recommendations/{}?{}", what.name(), query.finish());
    request(server, &path, None)
}

/// Asks the server at `path` (a GET, or a POST of this JSON body) and
/// returns its JSON answer; an error status becomes its `error` message.
pub fn request(server: &Server, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let method = if body.is_some() { "POST" } else { "GET" };
    request_with(
        server,
        method,
        path,
        body.map(|b| b.to_string().into_bytes()),
    )
}

/// `request` with any method and a raw body (sent as JSON).
pub fn request_with(
    server: &Server,
    method: &str,
    path: &str,
    payload: Option<Vec<u8>>,
) -> Result<Value, String> {
    if !server.url.starts_with("http://") {
        return Err(format!(
            "--url {:?}: only http:// URLs are supported",
            server.url
        ));
    }
    let url = format!("{}{path}", server.url.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("user-agent", concat!("oxeye/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &server.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(payload.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let (status, body) = tokio::time::timeout(server.timeout, async {
            let response = client
                .request(request)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("{url}: reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| format!("{url}: no answer within {:?}", server.timeout))??;
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{url}: answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        })?;
        if !status.is_success() {
            return Err(format!(
                "{url}: {status}: {}",
                value["error"].as_str().unwrap_or("(no message)")
            ));
        }
        Ok(value)
    })
}

fn cpu(v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        Value::String(s) => s.clone(),
        v => v.as_f64().map_or("?".into(), cpu_quantity),
    }
}

fn memory(v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        Value::String(s) => s.clone(),
        v => v.as_f64().map_or("?".into(), |b| {
            // Round up to MiB for display, as KRR does.
            memory_quantity((b / 1048576.0).ceil() * 1048576.0)
        }),
    }
}

const COLUMNS: [&str; 12] = [
    "Namespace",
    "Kind",
    "Name",
    "Container",
    "Pods",
    "CPU request",
    "CPU limit",
    "Memory request",
    "Memory limit",
    "Severity",
    "Backtest",
    "HPA",
];

fn rows(report: &Value) -> Vec<[String; 12]> {
    let empty = Vec::new();
    report["scans"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|s| {
            let o = &s["object"];
            let r = &s["recommended"];
            let a = &o["allocations"];
            let change = |now: String, rec: String| {
                if now == rec {
                    now
                } else {
                    format!("{now} -> {rec}")
                }
            };
            let hpa = &s["hpa_advice"];
            let hpa_text = if hpa["current_hpa_replay"].is_object() {
                hpa["reason"].as_str().unwrap_or("").to_string()
            } else if hpa["autoscale"] == true {
                format!("advise {}..{}", hpa["min_replicas"], hpa["max_replicas"])
            } else {
                "-".into()
            };
            [
                o["namespace"].as_str().unwrap_or("").to_string(),
                o["kind"].as_str().unwrap_or("").to_string(),
                o["name"].as_str().unwrap_or("").to_string(),
                o["container"].as_str().unwrap_or("").to_string(),
                o["pods"].as_array().map_or(0, |p| p.len()).to_string(),
                change(
                    cpu(&a["requests"]["cpu"]),
                    cpu(&r["requests"]["cpu"]["value"]),
                ),
                change(cpu(&a["limits"]["cpu"]), cpu(&r["limits"]["cpu"]["value"])),
                change(
                    memory(&a["requests"]["memory"]),
                    memory(&r["requests"]["memory"]["value"]),
                ),
                change(
                    memory(&a["limits"]["memory"]),
                    memory(&r["limits"]["memory"]["value"]),
                ),
                s["severity"].as_str().unwrap_or("").to_string(),
                if s["backtest"]["passed"] == true {
                    "passed"
                } else if s["backtest"]["tested"] == true {
                    "failed"
                } else {
                    "-"
                }
                .to_string(),
                hpa_text,
            ]
        })
        .collect()
}

pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

const DB_COLUMNS: [&str; 5] = ["Kind", "Template", "Figures", "Time/hour", "Example trace"];

fn db_rows(report: &Value) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for f in report["findings"].as_array().into_iter().flatten() {
        let figures = match f["kind"].as_str().unwrap_or("") {
            "slow_query" => format!(
                "{} calls, p95 {:.1} ms",
                f["calls"],
                f["p95_ms"].as_f64().unwrap_or(0.0)
            ),
            "index_candidate" => f["statement"].as_str().unwrap_or("").to_string(),
            _ => format!(
                "{} times, {:.0} calls each, {:.1} ms each",
                f["occurrences"],
                f["calls_per_occurrence"].as_f64().unwrap_or(0.0),
                f["time_per_occurrence_ms"].as_f64().unwrap_or(0.0)
            ),
        };
        rows.push(vec![
            f["kind"].as_str().unwrap_or("").to_string(),
            f["template"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect(),
            figures,
            format!(
                "{:.2} s",
                f["time_per_hour_seconds"].as_f64().unwrap_or(0.0)
            ),
            f["example_trace_ids"][0].as_str().unwrap_or("").to_string(),
        ]);
    }
    rows
}

pub(crate) fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (w, f) in widths.iter_mut().zip(row) {
            *w = (*w).max(f.chars().count());
        }
    }
    let line = |fields: Vec<&str>| -> String {
        let cells: Vec<String> = fields
            .iter()
            .zip(&widths)
            .map(|(f, w)| format!("{f:<w$}"))
            .collect();
        cells.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(columns.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

const CACHE_COLUMNS: [&str; 6] = [
    "Template",
    "Reads",
    "Distinct keys",
    "Achievable hit ratio",
    "Advised TTL",
    "DB time saved/hour",
];

fn cache_rows(report: &Value) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for c in report["candidates"].as_array().into_iter().flatten() {
        let template: String = c["template"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect();
        let upper = if c["keyed"] == "exact" {
            ""
        } else {
            " (upper bound)"
        };
        rows.push(vec![
            template,
            c["reads"].to_string(),
            c["distinct_keys"].to_string(),
            format!(
                "{:.1} %{upper}",
                c["achievable_hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
            ),
            c["advised_ttl_seconds"]
                .as_f64()
                .map_or("-".into(), |t| format!("{t} s")),
            format!(
                "{:.2} s",
                c["db_time_saved_per_hour_seconds"].as_f64().unwrap_or(0.0)
            ),
        ]);
    }
    for r in report["redis"].as_array().into_iter().flatten() {
        rows.push(vec![
            format!("redis {}", r["pattern"].as_str().unwrap_or("")),
            r["gets"].to_string(),
            "-".into(),
            format!(
                "measured {:.1} %",
                r["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
            ),
            "-".into(),
            format!("{} keys never read", r["keys_written_never_read"]),
        ]);
    }
    rows
}

/// A report as JSON or YAML (whole), or its rows as CSV or a table with
/// `summary` and the report's notes below.
fn render_rows(
    report: &Value,
    format: Format,
    columns: &[&str],
    rows: Vec<Vec<String>>,
    summary: String,
) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(report).map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::to_string(report).map_err(|e| e.to_string()),
        Format::Csv => {
            let mut out = columns.join(",") + "\n";
            for row in rows {
                let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
                out.push_str(&fields.join(","));
                out.push('\n');
            }
            Ok(out)
        }
        Format::Table => {
            let mut out = table(columns, &rows);
            if !summary.is_empty() {
                out.push('\n');
                out.push_str(&summary);
                out.push('\n');
            }
            for note in report["notes"].as_array().into_iter().flatten() {
                out.push_str(&format!("note: {}\n", note.as_str().unwrap_or("")));
            }
            Ok(out)
        }
    }
}

/// Cache advice in the requested format.
fn render_cache(report: &Value, format: Format) -> Result<String, String> {
    render_rows(
        report,
        format,
        &CACHE_COLUMNS,
        cache_rows(report),
        String::new(),
    )
}

/// Database findings in the requested format.
fn render_database(report: &Value, format: Format) -> Result<String, String> {
    let rows = db_rows(report);
    let summary = format!(
        "{} findings from {} database calls ({:.1} s of database time) and {} HTTP client calls",
        rows.len(),
        report["db_calls"],
        report["db_time_seconds"].as_f64().unwrap_or(0.0),
        report["http_calls"]
    );
    render_rows(report, format, &DB_COLUMNS, rows, summary)
}

/// Workload recommendations in the requested format.
fn render(report: &Value, format: Format) -> Result<String, String> {
    let rows: Vec<Vec<String>> = rows(report).into_iter().map(Vec::from).collect();
    let summary = format!(
        "{} containers; score {}; strategy {}: {}",
        rows.len(),
        report["score"],
        report["strategy"]["name"].as_str().unwrap_or(""),
        report["description"].as_str().unwrap_or("")
    );
    render_rows(report, format, &COLUMNS, rows, summary)
}

//! `oxeye dashboards import|export|list`: dashboards as code against a
//! running server. `import` takes Grafana's dashboard JSON as exported (or
//! Grafana's API wrapper) and overwrites what is stored under its uid;
//! `export` writes the stored JSON back out, ready for Grafana or git.

use std::path::Path;

use serde_json::Value;

use crate::recommend::cli::{request_with, table, Format, Server};

/// Saves each file; returns one line per dashboard.
pub fn import(server: &Server, files: &[std::path::PathBuf]) -> Result<String, String> {
    let mut out = String::new();
    for file in files {
        let body = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let saved = request_with(
            server,
            "POST",
            "/api/v1/dashboards?overwrite=true",
            Some(body),
        )
        .map_err(|e| format!("{}: {e}", file.display()))?;
        out.push_str(&format!(
            "{}: saved as {} version {} ({}{})\n",
            file.display(),
            saved["uid"].as_str().unwrap_or("?"),
            saved["version"],
            server.url.trim_end_matches('/'),
            saved["url"].as_str().unwrap_or(""),
        ));
    }
    Ok(out)
}

/// Writes the dashboard `uid` to `file` (standard output for `-`).
pub fn export(server: &Server, uid: &str, file: &Path) -> Result<String, String> {
    crate::dashboards::check_uid(uid)?;
    let answer = request_with(server, "GET", &format!("/api/v1/dashboards/{uid}"), None)?;
    let text =
        serde_json::to_string_pretty(&answer["dashboard"]).map_err(|e| e.to_string())? + "\n";
    if file.as_os_str() == "-" {
        return Ok(text);
    }
    std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(format!(
        "{uid} version {} written to {}\n",
        answer["meta"]["version"],
        file.display()
    ))
}

pub fn list(server: &Server, query: &str) -> Result<String, String> {
    let mut path = String::from("/api/v1/dashboards");
    if !query.is_empty() {
        path.push_str("?query=");
        path.push_str(&form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>());
    }
    let answer = request_with(server, "GET", &path, None)?;
    let entries = answer["data"].as_array().cloned().unwrap_or_default();
    Ok(match server.format {
        Format::Json => serde_json::to_string_pretty(&entries).map_err(|e| e.to_string())? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&entries).map_err(|e| e.to_string())?,
        Format::Csv | Format::Table => {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    ["uid", "title", "tags", "panels", "version"]
                        .iter()
                        .map(|k| text(&e[*k]))
                        .collect()
                })
                .collect();
            table(&["UID", "TITLE", "TAGS", "PANELS", "VERSION"], &rows)
        }
    })
}

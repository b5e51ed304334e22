//! `oxeye sql "SELECT …" --url URL`: a statement run by a running server
//! (`POST /api/v1/sql`), printed as a table, CSV, JSON or YAML.

use serde_json::{json, Value};

use crate::recommend::cli::{csv_field, request, table, Format, Server};

pub fn run(server: &Server, query: &str) -> Result<String, String> {
    let answer = request(server, "/api/v1/sql", Some(&json!({"query": query})))?;
    let columns: Vec<String> = answer["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or("").to_owned())
        .collect();
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r.as_array().into_iter().flatten().map(cell).collect())
        .collect();
    Ok(match server.format {
        Format::Json => serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&answer).map_err(|e| e.to_string())?,
        Format::Csv => {
            let mut out = columns
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(",")
                + "\n";
            for row in &rows {
                out.push_str(
                    &row.iter()
                        .map(|f| csv_field(f))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                out.push('\n');
            }
            out
        }
        Format::Table => {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            let mut out = table(&names, &rows);
            out.push_str(&format!(
                "({} row{})\n",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            ));
            out
        }
    })
}

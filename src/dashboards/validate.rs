//! What a dashboard body must look like before it is stored: Grafana's
//! dashboard JSON as exported (or wrapped as Grafana's API sends it,
//! `{"dashboard": {…}, "overwrite": …, "message": …}`). Only the parts the
//! renderer relies on are checked; everything else is kept as it came.
//! Problems are reported with the JSON path of the value at fault
//! (`$.panels[3].gridPos.w: …`).

use serde::Deserialize;
use serde_json::Value;

/// Grafana's grid is 24 columns wide.
pub const GRID_COLUMNS: u32 = 24;

/// Limits on one dashboard (`[dashboards]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    /// Panels, rows and panels inside rows together.
    pub max_panels: usize,
    pub max_variables: usize,
}

/// A body that passed: the dashboard and what came with it.
#[derive(Debug)]
pub struct Accepted {
    pub dashboard: Value,
    /// `overwrite` of Grafana's wrapper (or `?overwrite=true`).
    pub overwrite: bool,
    pub message: String,
    pub summary: Summary,
}

/// What the list shows of a dashboard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub title: String,
    pub uid: Option<String>,
    pub tags: Vec<String>,
    pub panels: usize,
    /// The `version` in the body (optimistic locking on save).
    pub version: Option<u64>,
}

#[derive(Deserialize)]
struct Wrapper {
    dashboard: Value,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    panels: Option<Vec<Panel>>,
    /// Schema before 16: rows of panels with `span` widths.
    #[serde(default)]
    rows: Option<Vec<OldRow>>,
    #[serde(default)]
    templating: Option<Templating>,
    /// Checked for its shape only (`from` and `to` strings).
    #[serde(default)]
    #[allow(dead_code)]
    time: Option<TimeRange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Panel {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    grid_pos: Option<GridPos>,
    #[serde(default)]
    targets: Option<Vec<serde_json::Map<String, Value>>>,
    #[serde(default)]
    panels: Option<Vec<Panel>>,
}

#[derive(Deserialize)]
struct GridPos {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

#[derive(Deserialize)]
struct OldRow {
    #[serde(default)]
    panels: Option<Vec<Panel>>,
}

#[derive(Deserialize)]
struct Templating {
    #[serde(default)]
    list: Vec<Variable>,
}

#[derive(Deserialize)]
struct Variable {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct TimeRange {
    #[allow(dead_code)]
    from: String,
    #[allow(dead_code)]
    to: String,
}

fn at(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        "$".into()
    } else {
        format!("$.{text}")
    }
}

/// Checks `body` (the bytes of a PUT/POST or a file) and returns the dashboard.
pub fn accept(body: &[u8], limits: Limits) -> Result<Accepted, String> {
    if body.len() > limits.max_bytes {
        return Err(format!(
            "the dashboard is {} bytes, over dashboards.max_size ({} bytes)",
            body.len(),
            limits.max_bytes
        ));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let value: Value = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| format!("{}: {}", at(e.path()), e.inner()))?;
    json.end()
        .map_err(|e| format!("$: trailing data after the dashboard: {e}"))?;
    let (dashboard, overwrite, message, prefix) = match value {
        Value::Object(ref map) if map.get("dashboard").is_some_and(Value::is_object) => {
            let wrapper: Wrapper = serde_path_to_error::deserialize(&value)
                .map_err(|e| format!("{}: {}", at(e.path()), e.inner()))?;
            (
                wrapper.dashboard,
                wrapper.overwrite,
                wrapper.message.unwrap_or_default(),
                "dashboard.",
            )
        }
        Value::Object(_) => (value, false, String::new(), ""),
        other => {
            return Err(format!(
                "$: a dashboard is a JSON object, not {}",
                kind_of(&other)
            ))
        }
    };
    let summary = check(&dashboard, limits).map_err(|e| {
        // Errors inside a wrapper point into it.
        match e.strip_prefix("$.") {
            Some(rest) if !prefix.is_empty() => format!("$.{prefix}{rest}"),
            _ if !prefix.is_empty() && e.starts_with("$:") => {
                format!("$.{}{}", prefix.trim_end_matches('.'), &e[1..])
            }
            _ => e,
        }
    })?;
    Ok(Accepted {
        dashboard,
        overwrite,
        message,
        summary,
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks the dashboard object itself.
pub fn check(dashboard: &Value, limits: Limits) -> Result<Summary, String> {
    let shape: Shape = serde_path_to_error::deserialize(dashboard)
        .map_err(|e| format!("{}: {}", at(e.path()), e.inner()))?;
    let title = shape.title.unwrap_or_default();
    if title.trim().is_empty() {
        return Err("$.title: a dashboard needs a title".into());
    }
    if title.chars().count() > 1000 {
        return Err("$.title: longer than 1000 characters".into());
    }
    if let Some(uid) = &shape.uid {
        check_uid(uid).map_err(|e| format!("$.uid: {e}"))?;
    }
    let mut panels = 0usize;
    if let Some(list) = &shape.panels {
        check_panels(list, "$.panels", 0, &mut panels, limits)?;
    }
    if let Some(rows) = &shape.rows {
        for (i, row) in rows.iter().enumerate() {
            panels += 1;
            if let Some(list) = &row.panels {
                check_panels(list, &format!("$.rows[{i}].panels"), 1, &mut panels, limits)?;
            }
        }
    }
    if panels > limits.max_panels {
        return Err(format!(
            "$.panels: {panels} panels, over dashboards.max_panels ({})",
            limits.max_panels
        ));
    }
    if let Some(templating) = &shape.templating {
        if templating.list.len() > limits.max_variables {
            return Err(format!(
                "$.templating.list: {} variables, over the limit of {}",
                templating.list.len(),
                limits.max_variables
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, var) in templating.list.iter().enumerate() {
            let valid = !var.name.is_empty()
                && var.name.len() <= 100
                && var
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(format!(
                    "$.templating.list[{i}].name: {:?} is not a variable name (letters, digits, _ and -)",
                    var.name
                ));
            }
            if !seen.insert(var.name.as_str()) {
                return Err(format!(
                    "$.templating.list[{i}].name: variable {:?} is defined twice",
                    var.name
                ));
            }
            if var.kind.as_deref().is_some_and(str::is_empty) {
                return Err(format!("$.templating.list[{i}].type: empty"));
            }
        }
    }
    Ok(Summary {
        title,
        uid: shape.uid,
        tags: shape.tags.unwrap_or_default(),
        panels,
        version: shape.version,
    })
}

fn check_panels(
    list: &[Panel],
    path: &str,
    depth: usize,
    count: &mut usize,
    limits: Limits,
) -> Result<(), String> {
    for (i, panel) in list.iter().enumerate() {
        *count += 1;
        if *count > limits.max_panels {
            return Err(format!(
                "{path}[{i}]: over dashboards.max_panels ({})",
                limits.max_panels
            ));
        }
        if let Some(kind) = &panel.kind {
            if kind.is_empty() || kind.len() > 100 {
                return Err(format!("{path}[{i}].type: not a panel type: {kind:?}"));
            }
        }
        if let Some(pos) = &panel.grid_pos {
            if pos.w == 0 || pos.w > GRID_COLUMNS {
                return Err(format!(
                    "{path}[{i}].gridPos.w: {} is outside 1..=24 (the grid is 24 columns wide)",
                    pos.w
                ));
            }
            if pos.x >= GRID_COLUMNS {
                return Err(format!(
                    "{path}[{i}].gridPos.x: {} is outside 0..=23",
                    pos.x
                ));
            }
            if pos.h == 0 || pos.h > 1000 || pos.y > 100_000 {
                return Err(format!(
                    "{path}[{i}].gridPos: height {} or row {} is out of range",
                    pos.h, pos.y
                ));
            }
        }
        if let Some(targets) = &panel.targets {
            if targets.len() > 26 * 4 {
                return Err(format!(
                    "{path}[{i}].targets: {} queries in one panel, over the limit of 104",
                    targets.len()
                ));
            }
        }
        if let Some(children) = &panel.panels {
            if depth > 0 {
                return Err(format!(
                    "{path}[{i}].panels: rows cannot be nested inside rows"
                ));
            }
            check_panels(
                children,
                &format!("{path}[{i}].panels"),
                depth + 1,
                count,
                limits,
            )?;
        }
    }
    Ok(())
}

/// Grafana's rule for a uid: 1–40 characters of letters, digits, `-` and `_`.
pub fn check_uid(uid: &str) -> Result<(), String> {
    if uid.is_empty() || uid.len() > 40 {
        return Err(format!("uid {uid:?} must be 1 to 40 characters"));
    }
    if !uid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "uid {uid:?} may only hold letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_panels: 50,
        max_variables: 10,
    };

    #[test]
    fn errors_name_the_json_path() {
        let err = accept(
            br#"{"title": "t", "panels": [{"type": "stat"}, {"gridPos": {"x": 0, "y": 0, "w": "wide", "h": 8}}]}"#,
            LIMITS,
        )
        .unwrap_err();
        assert!(
            err.starts_with("$.panels[1].gridPos.w: invalid type"),
            "{err}"
        );
        let err = accept(
            br#"{"dashboard": {"title": "t", "panels": [{"gridPos": {"x": 0, "y": 0, "w": 30, "h": 8}}]}}"#,
            LIMITS,
        )
        .unwrap_err();
        assert!(
            err.starts_with("$.dashboard.panels[0].gridPos.w: 30"),
            "{err}"
        );
        let err = accept(br#"{"title": "t", "panels": [{"title": "x",}]}"#, LIMITS).unwrap_err();
        assert!(
            err.contains("$.panels[0]") && err.contains("line 1"),
            "{err}"
        );
        let err = accept(br#"{"panels": []}"#, LIMITS).unwrap_err();
        assert_eq!(err, "$.title: a dashboard needs a title");
        let err = accept(br#"[1]"#, LIMITS).unwrap_err();
        assert!(err.contains("not an array"), "{err}");
        let err = accept(
            br#"{"title": "t", "templating": {"list": [{"name": "a"}, {"name": "a"}]}}"#,
            LIMITS,
        )
        .unwrap_err();
        assert!(err.starts_with("$.templating.list[1].name"), "{err}");
        let err = accept(br#"{"title": "t", "uid": "../etc"}"#, LIMITS).unwrap_err();
        assert!(err.starts_with("$.uid:"), "{err}");
        let err = accept(br#"{"title": "t"} {}"#, LIMITS).unwrap_err();
        assert!(err.contains("trailing"), "{err}");
    }

    #[test]
    fn counts_and_limits_panels_in_rows() {
        let panels: Vec<Value> = (0..10)
            .map(|i| serde_json::json!({"type": "row", "panels": [{"type": "stat"}, {"type": "gauge"}], "id": i}))
            .collect();
        let body = serde_json::json!({"title": "t", "panels": panels}).to_string();
        let ok = accept(body.as_bytes(), LIMITS).unwrap();
        assert_eq!(ok.summary.panels, 30);
        let tight = Limits {
            max_panels: 20,
            ..LIMITS
        };
        assert!(accept(body.as_bytes(), tight)
            .unwrap_err()
            .contains("max_panels"));
        let nested = br#"{"title": "t", "panels": [{"type": "row", "panels": [{"type": "row", "panels": []}]}]}"#;
        assert!(accept(nested, LIMITS).unwrap_err().contains("nested"));
    }

    #[test]
    fn the_shared_grafana_dashboards_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/grafana-dashboards");
        let limits = Limits {
            max_bytes: 8 << 20,
            max_panels: 1000,
            max_variables: 100,
        };
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("../shared/reference/grafana-dashboards") {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let body = std::fs::read(&path).unwrap();
                let ok =
                    accept(&body, limits).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(ok.summary.panels > 10, "{}", path.display());
                seen += 1;
            }
        }
        assert_eq!(seen, 3);
    }
}

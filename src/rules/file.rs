//! Prometheus rule files: parsed strictly (unknown keys are errors, as
//! Prometheus' YAML decoder has them) and validated with Prometheus'
//! checks and messages (`group "g", rule 2, "Name": what is wrong`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::template::Template;

/// Largest rule file read (Prometheus has no limit; a rule file is
/// configuration, but a runaway generator should not exhaust memory).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    labels: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    alert: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    expr: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    annotations: BTreeMap<String, serde_yaml_ng::Value>,
}

/// A rule group as loaded.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub file: PathBuf,
    pub name: String,
    /// `None`: the global `rules.evaluation_interval`.
    pub interval: Option<Duration>,
    pub query_offset: Option<Duration>,
    /// Most alerts (series, for recording rules) a rule may produce; 0: no limit.
    pub limit: usize,
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    Record,
    Alert {
        for_: Duration,
        keep_firing_for: Duration,
        annotations: BTreeMap<String, String>,
    },
}

/// One rule as loaded: its expression parsed, its templates checked.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// The record or alert name.
    pub name: String,
    pub expr: String,
    /// `expr`, parsed once at load.
    pub parsed: std::sync::Arc<promql_parser::parser::Expr>,
    pub kind: RuleKind,
    pub labels: BTreeMap<String, String>,
}

impl RuleSpec {
    pub fn is_alert(&self) -> bool {
        matches!(self.kind, RuleKind::Alert { .. })
    }
}

/// What is wrong with a rule file; each line names the file and where.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct RuleFileErrors(pub Vec<String>);

fn scalar(value: &serde_yaml_ng::Value) -> Option<String> {
    match value {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Null => Some(String::new()),
        _ => None,
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    promql_parser::util::duration::parse_duration(text)
        .map_err(|_| format!("not a valid duration string: {text:?}"))
}

/// Prometheus' metric name syntax: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_' || bytes[0] == b':')
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
}

/// Parse and validate the rule file at `path`.
pub fn load_file(path: &Path) -> Result<Vec<GroupSpec>, RuleFileErrors> {
    let shown = path.display().to_string();
    let fail = |m: String| RuleFileErrors(vec![format!("{shown}: {m}")]);
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "file is {} bytes, more than {MAX_FILE_BYTES}",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    parse(&text, path)
}

/// Parse and validate rule-file text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<GroupSpec>, RuleFileErrors> {
    let shown = path.display().to_string();
    let raw: RawFile = if text.trim().is_empty() {
        RawFile { groups: Vec::new() }
    } else {
        serde_yaml_ng::from_str(text)
            .map_err(|e| RuleFileErrors(vec![format!("{shown}: yaml: {e}")]))?
    };
    let mut errors = Vec::new();
    let mut seen = HashMap::new();
    let mut groups = Vec::new();
    for raw_group in raw.groups {
        let mut group_error = |m: String| errors.push(format!("{shown}: {m}"));
        if raw_group.name.is_empty() {
            group_error("Groupname must not be empty".into());
        }
        if seen.insert(raw_group.name.clone(), ()).is_some() {
            group_error(format!(
                "groupname: \"{}\" is repeated in the same file",
                raw_group.name
            ));
        }
        let interval = match raw_group.interval.as_deref().map(duration).transpose() {
            Ok(Some(d)) if d.is_zero() => None,
            Ok(d) => d,
            Err(e) => {
                group_error(format!("group \"{}\": interval: {e}", raw_group.name));
                None
            }
        };
        let query_offset = match raw_group.query_offset.as_deref().map(duration).transpose() {
            Ok(d) => d,
            Err(e) => {
                group_error(format!("group \"{}\": query_offset: {e}", raw_group.name));
                None
            }
        };
        let limit = match raw_group.limit.unwrap_or(0) {
            l if l < 0 => {
                group_error(format!(
                    "group \"{}\": limit must not be negative",
                    raw_group.name
                ));
                0
            }
            l => usize::try_from(l).unwrap_or(usize::MAX),
        };
        let mut labels = BTreeMap::new();
        for (k, v) in &raw_group.labels {
            if !crate::model::is_valid_label_name(k) || k == "__name__" {
                group_error(format!(
                    "group \"{}\": invalid label name: {k}",
                    raw_group.name
                ));
            }
            match scalar(v) {
                Some(v) => {
                    labels.insert(k.clone(), v);
                }
                None => group_error(format!(
                    "group \"{}\": label {k}: value must be a string",
                    raw_group.name
                )),
            }
        }
        let mut rules = Vec::new();
        for (i, raw_rule) in raw_group.rules.into_iter().enumerate() {
            let name_of = |v: &Option<serde_yaml_ng::Value>| v.as_ref().and_then(scalar);
            let record = name_of(&raw_rule.record).unwrap_or_default();
            let alert = name_of(&raw_rule.alert).unwrap_or_default();
            let shown_name = if alert.is_empty() { &record } else { &alert }.clone();
            let mut rule_errors = Vec::new();
            if !record.is_empty() && !alert.is_empty() {
                rule_errors.push("only one of 'record' and 'alert' must be set".to_owned());
            }
            if record.is_empty() && alert.is_empty() {
                rule_errors.push("one of 'record' or 'alert' must be set".to_owned());
            }
            let expr = raw_rule.expr.as_ref().and_then(scalar).unwrap_or_default();
            let mut parsed = None;
            if expr.is_empty() {
                rule_errors.push("field 'expr' must be set in rule".to_owned());
            } else {
                match super::parse_expr(&expr) {
                    Ok(p) => parsed = Some(p),
                    Err(e) => rule_errors.push(format!("could not parse expression: {e}")),
                }
            }
            let for_ = match raw_rule.for_.as_deref().map(duration).transpose() {
                Ok(d) => d.unwrap_or_default(),
                Err(e) => {
                    rule_errors.push(format!("for: {e}"));
                    Duration::ZERO
                }
            };
            let keep_firing_for = match raw_rule
                .keep_firing_for
                .as_deref()
                .map(duration)
                .transpose()
            {
                Ok(d) => d.unwrap_or_default(),
                Err(e) => {
                    rule_errors.push(format!("keep_firing_for: {e}"));
                    Duration::ZERO
                }
            };
            if !record.is_empty() {
                if !raw_rule.annotations.is_empty() {
                    rule_errors.push("invalid field 'annotations' in recording rule".to_owned());
                }
                if !for_.is_zero() {
                    rule_errors.push("invalid field 'for' in recording rule".to_owned());
                }
                if !keep_firing_for.is_zero() {
                    rule_errors
                        .push("invalid field 'keep_firing_for' in recording rule".to_owned());
                }
                if !is_valid_metric_name(&record) {
                    rule_errors.push(format!("invalid recording rule name: {record}"));
                }
            }
            let mut rule_labels = BTreeMap::new();
            for (k, v) in &raw_rule.labels {
                if !crate::model::is_valid_label_name(k) || k == "__name__" {
                    rule_errors.push(format!("invalid label name: {k}"));
                }
                match scalar(v) {
                    Some(v) => {
                        rule_labels.insert(k.clone(), v);
                    }
                    None => rule_errors.push(format!("invalid label value for {k}: not a string")),
                }
            }
            let mut annotations = BTreeMap::new();
            for (k, v) in &raw_rule.annotations {
                if !crate::model::is_valid_label_name(k) {
                    rule_errors.push(format!("invalid annotation name: {k}"));
                }
                match scalar(v) {
                    Some(v) => {
                        annotations.insert(k.clone(), v);
                    }
                    None => rule_errors.push(format!("invalid annotation {k}: not a string")),
                }
            }
            if !alert.is_empty() {
                let template_name = format!("__alert_{alert}");
                for text in rule_labels.values().chain(annotations.values()) {
                    if let Err(e) = Template::parse(&template_name, text) {
                        rule_errors.push(e.to_string());
                    }
                }
            }
            for e in rule_errors {
                errors.push(format!(
                    "{shown}: group \"{}\", rule {}, \"{shown_name}\": {e}",
                    raw_group.name,
                    i + 1
                ));
            }
            // A rule with errors is never evaluated (the file is refused).
            let parsed =
                std::sync::Arc::new(parsed.unwrap_or(promql_parser::parser::Expr::NumberLiteral(
                    promql_parser::parser::NumberLiteral { val: f64::NAN },
                )));
            rules.push(RuleSpec {
                name: shown_name,
                expr,
                parsed,
                kind: if alert.is_empty() {
                    RuleKind::Record
                } else {
                    RuleKind::Alert {
                        for_,
                        keep_firing_for,
                        annotations,
                    }
                },
                labels: rule_labels,
            });
        }
        groups.push(GroupSpec {
            file: path.to_owned(),
            name: raw_group.name,
            interval,
            query_offset,
            limit,
            labels,
            rules,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(RuleFileErrors(errors))
    }
}

/// Rules in `groups` with the same name, expression and labels as another
/// (promtool's `duplicate-rules` lint): `(name, count)`.
pub fn duplicates(groups: &[GroupSpec]) -> Vec<(String, usize)> {
    type Identity = (String, String, Vec<(String, String)>);
    let mut counts: BTreeMap<Identity, usize> = BTreeMap::new();
    for group in groups {
        for rule in &group.rules {
            let labels = rule.labels.clone().into_iter().collect();
            *counts
                .entry((rule.name.clone(), rule.expr.clone(), labels))
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((name, _, _), n)| (name, n))
        .collect()
}

/// The files `patterns` name (globs, relative to `base`), sorted, each once.
pub fn expand_globs(base: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let full = full.to_string_lossy().into_owned();
        let matches =
            glob::glob(&full).map_err(|e| format!("rules.files: bad pattern {pattern:?}: {e}"))?;
        for entry in matches {
            let path = entry.map_err(|e| format!("rules.files: {e}"))?;
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text, Path::new("r.yml")).unwrap_err().0
    }

    #[test]
    fn loads_a_prometheus_rule_file() {
        let groups = parse(
            r#"
groups:
  - name: node
    interval: 30s
    limit: 10
    query_offset: 1m
    labels: {team: infra}
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          level: 1
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is down"
"#,
            Path::new("r.yml"),
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.interval, Some(Duration::from_secs(30)));
        assert_eq!(g.query_offset, Some(Duration::from_secs(60)));
        assert_eq!(g.limit, 10);
        assert_eq!(g.labels["team"], "infra");
        assert_eq!(g.rules[0].labels["level"], "1");
        match &g.rules[1].kind {
            RuleKind::Alert {
                for_,
                keep_firing_for,
                annotations,
            } => {
                assert_eq!(*for_, Duration::from_secs(300));
                assert_eq!(*keep_firing_for, Duration::from_secs(60));
                assert!(annotations["summary"].contains("$labels"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_what_promtool_rejects_with_its_messages() {
        let e = errors("groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up\n        bogus: 1\n");
        assert!(e[0].contains("unknown field `bogus`"), "{e:?}");
        let e = errors("groups:\n  - name: a\n    rules: []\n  - name: a\n    rules: []\n");
        assert_eq!(
            e,
            vec!["r.yml: groupname: \"a\" is repeated in the same file"]
        );
        let e = errors(
            r#"
groups:
  - name: g
    rules:
      - record: "bad name"
        expr: up
        for: 5m
        annotations: {a: b}
      - alert: A
        record: b
        expr: "sum(("
      - alert: T
        expr: up
        annotations:
          x: "{{ nosuch }}"
        labels:
          "bad-label": x
"#,
        );
        let want = [
            "r.yml: group \"g\", rule 1, \"bad name\": invalid field 'annotations' in recording rule",
            "r.yml: group \"g\", rule 1, \"bad name\": invalid field 'for' in recording rule",
            "r.yml: group \"g\", rule 1, \"bad name\": invalid recording rule name: bad name",
            "r.yml: group \"g\", rule 2, \"A\": only one of 'record' and 'alert' must be set",
            "r.yml: group \"g\", rule 3, \"T\": invalid label name: bad-label",
        ];
        for w in want {
            assert!(e.iter().any(|l| l == w), "missing {w:?} in {e:#?}");
        }
        assert!(e.iter().any(
            |l| l.starts_with("r.yml: group \"g\", rule 2, \"A\": could not parse expression:")
        ));
        assert!(
            e.iter().any(|l| l
                .contains("rule 3, \"T\": template: __alert_T:1: function \"nosuch\" not defined")),
            "{e:#?}"
        );
    }

    #[test]
    fn finds_duplicates() {
        let groups = parse(
            "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n      - record: x\n        expr: up\n",
            Path::new("r.yml"),
        )
        .unwrap();
        assert_eq!(duplicates(&groups), vec![("x".to_owned(), 2)]);
    }
}

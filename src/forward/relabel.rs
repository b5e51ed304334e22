//! Prometheus' relabeling (`relabel_configs`, `write_relabel_configs`), with
//! its defaults and every action: `replace`, `keep`, `drop`, `keepequal`,
//! `dropequal`, `hashmod`, `labelmap`, `labeldrop`, `labelkeep`,
//! `lowercase`, `uppercase`. Regexes are anchored at both ends; `$1`,
//! `${1}`, `$name` in `target_label` and `replacement` expand as Go's
//! `Regexp.ExpandString` does (the longest name wins: `$1x` is group `1x`).
//! `hashmod` is the low 8 bytes of the MD5 of the joined value, big-endian,
//! modulo `modulus`, so shards agree with Prometheus'.

use regex::Regex;
use serde::Deserialize;

use crate::model::{is_valid_label_name, Labels};

/// One relabeling step as written in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub modulus: u64,
    #[serde(default)]
    pub target_label: String,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default = "default_action")]
    pub action: String,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}
fn default_action() -> String {
    "replace".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// A checked, compiled step.
#[derive(Debug, Clone)]
pub struct Relabel {
    config: RelabelConfig,
    action: Action,
    regex: Regex,
}

impl RelabelConfig {
    /// Check the step as Prometheus does when it loads a configuration.
    pub fn compile(&self) -> Result<Relabel, String> {
        let action = match self.action.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            other => return Err(format!("unknown relabel action \"{other}\"")),
        };
        if self.regex.len() > 4096 {
            return Err("regex longer than 4096 bytes".into());
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{})$", self.regex))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("invalid regex \"{}\": {e}", self.regex))?;
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return Err(format!(
                "relabel action {} requires target_label",
                self.action
            ));
        }
        let template_ok =
            |t: &str| is_valid_label_name(t) || (action == Action::Replace && t.contains('$'));
        if needs_target && !template_ok(&self.target_label) {
            return Err(format!(
                "\"{}\" is not a valid target_label",
                self.target_label
            ));
        }
        if matches!(
            action,
            Action::KeepEqual | Action::DropEqual | Action::Lowercase | Action::Uppercase
        ) && !is_valid_label_name(&self.target_label)
        {
            return Err(format!(
                "\"{}\" is not a valid target_label",
                self.target_label
            ));
        }
        if action == Action::HashMod && self.modulus == 0 {
            return Err("relabel action hashmod requires a modulus greater than zero".into());
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!self.source_labels.is_empty()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != default_separator()
                || self.replacement != default_replacement())
        {
            return Err(format!(
                "{} takes only regex (source_labels, target_label, modulus, separator and replacement must be left unset)",
                self.action
            ));
        }
        if matches!(
            action,
            Action::Keep
                | Action::Drop
                | Action::KeepEqual
                | Action::DropEqual
                | Action::HashMod
                | Action::Replace
                | Action::Lowercase
                | Action::Uppercase
        ) && self.source_labels.iter().any(|l| !is_valid_label_name(l))
        {
            return Err("source_labels must be valid label names".into());
        }
        Ok(Relabel {
            config: self.clone(),
            action,
            regex,
        })
    }
}

/// Apply `steps` in order; `None` when a step drops the series (or nothing
/// is left of it).
pub fn process(labels: &Labels, steps: &[Relabel]) -> Option<Labels> {
    if steps.is_empty() {
        return Some(labels.clone());
    }
    let mut pairs: Vec<(String, String)> = labels.pairs().to_vec();
    for step in steps {
        if !step.apply(&mut pairs) {
            return None;
        }
    }
    let labels = Labels::from_pairs(pairs);
    (!labels.is_empty()).then_some(labels)
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn set(pairs: &mut Vec<(String, String)>, name: &str, value: String) {
    match pairs.iter_mut().find(|(n, _)| n == name) {
        Some(pair) if value.is_empty() => {
            let name = pair.0.clone();
            pairs.retain(|(n, _)| *n != name);
        }
        Some(pair) => pair.1 = value,
        None if value.is_empty() => {}
        None => pairs.push((name.to_owned(), value)),
    }
}

impl Relabel {
    /// Apply to `pairs`; `false` drops the series.
    fn apply(&self, pairs: &mut Vec<(String, String)>) -> bool {
        let c = &self.config;
        let value = c
            .source_labels
            .iter()
            .map(|name| get(pairs, name))
            .collect::<Vec<_>>()
            .join(&c.separator);
        match self.action {
            Action::Drop => return !self.regex.is_match(&value),
            Action::Keep => return self.regex.is_match(&value),
            Action::KeepEqual => return get(pairs, &c.target_label) == value,
            Action::DropEqual => return get(pairs, &c.target_label) != value,
            Action::Replace => {
                let Some(captures) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                captures.expand(&c.target_label, &mut target);
                if !is_valid_label_name(&target) {
                    return true;
                }
                let mut replaced = String::new();
                captures.expand(&c.replacement, &mut replaced);
                set(pairs, &target, replaced);
            }
            Action::Lowercase => set(pairs, &c.target_label, value.to_lowercase()),
            Action::Uppercase => set(pairs, &c.target_label, value.to_uppercase()),
            Action::HashMod => {
                let digest = md5::compute(value.as_bytes());
                let low = u64::from_be_bytes(digest.0[8..16].try_into().expect("8 bytes"));
                set(pairs, &c.target_label, (low % c.modulus).to_string());
            }
            Action::LabelMap => {
                let mut added = Vec::new();
                for (name, value) in pairs.iter() {
                    if let Some(captures) = self.regex.captures(name) {
                        let mut target = String::new();
                        captures.expand(&c.replacement, &mut target);
                        added.push((target, value.clone()));
                    }
                }
                for (name, value) in added {
                    set(pairs, &name, value);
                }
            }
            Action::LabelDrop => pairs.retain(|(name, _)| !self.regex.is_match(name)),
            Action::LabelKeep => pairs.retain(|(name, _)| self.regex.is_match(name)),
        }
        true
    }
}

/// Compile a list of steps (the configuration was checked at load).
pub fn compile_all(configs: &[RelabelConfig]) -> Result<Vec<Relabel>, String> {
    configs.iter().map(RelabelConfig::compile).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(toml_text: &str) -> Relabel {
        let config: RelabelConfig = toml::from_str(toml_text).unwrap();
        config.compile().unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn keep_and_drop_use_anchored_regexes_over_joined_sources() {
        let keep = step(
            r#"source_labels = ["__name__", "job"]
regex = "up;node"
action = "keep""#,
        );
        let up = labels(&[("__name__", "up"), ("job", "node")]);
        assert!(process(&up, std::slice::from_ref(&keep)).is_some());
        let other = labels(&[("__name__", "up"), ("job", "node2")]);
        assert!(
            process(&other, std::slice::from_ref(&keep)).is_none(),
            "anchored"
        );
        let drop = step(
            r#"source_labels = ["__name__"]
regex = "go_.*"
action = "drop""#,
        );
        assert!(process(
            &labels(&[("__name__", "go_gc")]),
            std::slice::from_ref(&drop)
        )
        .is_none());
        assert!(process(&up, &[drop]).is_some());
    }

    #[test]
    fn replace_expands_groups_like_go_and_an_empty_result_deletes() {
        let r = step(
            r#"source_labels = ["instance"]
regex = "(.*):(\\d+)"
target_label = "host"
replacement = "${1}-$2""#,
        );
        let out = process(&labels(&[("instance", "db:9100")]), &[r]).unwrap();
        assert_eq!(out.get("host"), Some("db-9100"));
        // `$1x` names group "1x", which does not exist: empty, so deleted.
        let r = step(
            r#"source_labels = ["a"]
target_label = "a"
replacement = "$1x""#,
        );
        let out = process(&labels(&[("a", "v"), ("b", "w")]), &[r]).unwrap();
        assert_eq!(out.get("a"), None);
        // No match: unchanged. Default regex with no sources adds a constant.
        let c = step(
            r#"target_label = "cluster"
replacement = "edge-1""#,
        );
        let out = process(&labels(&[("a", "v")]), &[c]).unwrap();
        assert_eq!(out.get("cluster"), Some("edge-1"));
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; low 8 bytes
        // 0xedef654fccc4a4d8 % 1000 = 696.
        let h = step(
            r#"source_labels = ["a"]
target_label = "shard"
modulus = 1000
action = "hashmod""#,
        );
        let out = process(&labels(&[("a", "foo")]), &[h]).unwrap();
        assert_eq!(out.get("shard"), Some("696"));
    }

    #[test]
    fn label_actions_and_case() {
        let map = step(
            r#"regex = "__meta_(.+)"
action = "labelmap""#,
        );
        let drop = step(
            r#"regex = "__meta_.*"
action = "labeldrop""#,
        );
        let upper = step(
            r#"source_labels = ["zone"]
target_label = "zone"
action = "uppercase""#,
        );
        let out = process(
            &labels(&[("__meta_zone", "a"), ("x", "1")]),
            &[
                map,
                drop,
                step(
                    r#"source_labels = ["zone"]
target_label = "zone_copy""#,
                ),
                upper,
            ],
        )
        .unwrap();
        assert_eq!(
            out.pairs(),
            labels(&[("x", "1"), ("zone", "A"), ("zone_copy", "a")]).pairs()
        );
        let keep = step(
            r#"regex = "x"
action = "labelkeep""#,
        );
        assert!(
            process(&labels(&[("y", "1")]), &[keep]).is_none(),
            "nothing left"
        );
        let eq = step(
            r#"source_labels = ["a"]
target_label = "b"
action = "keepequal""#,
        );
        assert!(process(
            &labels(&[("a", "1"), ("b", "1")]),
            std::slice::from_ref(&eq)
        )
        .is_some());
        assert!(process(&labels(&[("a", "1"), ("b", "2")]), &[eq]).is_none());
    }

    #[test]
    fn bad_steps_are_refused_with_a_reason() {
        for (text, needle) in [
            (r#"action = "explode""#, "unknown relabel action"),
            (r#"regex = "(""#, "invalid regex"),
            (
                r#"action = "hashmod"
target_label = "x""#,
                "modulus",
            ),
            (
                r#"action = "labeldrop"
regex = "a"
target_label = "x""#,
                "takes only regex",
            ),
            (
                r#"action = "replace"
source_labels = ["a"]
target_label = "0bad""#,
                "not a valid target_label",
            ),
            (r#"action = "lowercase""#, "requires target_label"),
        ] {
            let config: RelabelConfig = toml::from_str(text).unwrap();
            let err = config.compile().unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}

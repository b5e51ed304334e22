//! [`LogQuery`] evaluated on one in-memory document, for the live tail
//! (records matched as they arrive, before any index commit). Follows the
//! same rules as the compiled query: words are compared after the same
//! analysis (split on non-alphanumerics, lowercased), exact queries compare
//! whole values.

use serde_json::Value;

use super::ast::LogQuery;
use super::compile::wildcard_to_regex;
use super::{catalog_glob, datemath};
use crate::model::log::{BODY_FIELDS, TIMESTAMP_FIELD};
use crate::storage::logs::StoredDoc;

/// A document flattened once for matching.
pub struct Flat<'a> {
    doc: &'a StoredDoc,
    leaves: Vec<(String, &'a Value)>,
}

impl<'a> Flat<'a> {
    pub fn new(doc: &'a StoredDoc) -> Self {
        let mut leaves = Vec::new();
        for (k, v) in doc.source.iter() {
            flatten(k.clone(), v, &mut leaves);
        }
        Flat { doc, leaves }
    }

    fn values(&self, field: &str) -> impl Iterator<Item = &Value> {
        let field = field.strip_suffix(".keyword").unwrap_or(field).to_owned();
        self.leaves
            .iter()
            .filter(move |(p, _)| *p == field || (field.contains('*') && catalog_glob(&field, p)))
            .map(|(_, v)| *v)
    }

    fn any_text(&self) -> impl Iterator<Item = &str> {
        self.leaves.iter().filter_map(|(_, v)| v.as_str())
    }
}

fn flatten<'a>(path: String, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(format!("{path}.{k}"), v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten(path.clone(), item, out);
            }
        }
        Value::Null => {}
        _ => out.push((path, value)),
    }
}

pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 255)
        .map(str::to_lowercase)
        .collect()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn equal(value: &Value, wanted: &Value) -> bool {
    match (value, wanted) {
        (Value::Number(a), _) => {
            let b = match wanted {
                Value::Number(b) => b.as_f64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            a.as_f64().is_some_and(|a| Some(a) == b)
        }
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Bool(a), Value::String(s)) => a.to_string() == *s,
        (a, b) => text_of(a) == text_of(b),
    }
}

/// Whether the document matches.
pub fn matches(query: &LogQuery, doc: &Flat<'_>, now_ms: i64) -> bool {
    match query {
        LogQuery::All => true,
        LogQuery::Nothing => false,
        LogQuery::Term { field, value } => term(doc, field, value, now_ms),
        LogQuery::Terms { field, values } => values.iter().any(|v| term(doc, field, v, now_ms)),
        LogQuery::Match {
            field, text, and, ..
        } => {
            let wanted = words(text);
            if wanted.is_empty() {
                return false;
            }
            let check = |haystack: &str| {
                let have = words(haystack);
                if *and {
                    wanted.iter().all(|w| have.contains(w))
                } else {
                    wanted.iter().any(|w| have.contains(w))
                }
            };
            match field {
                None => doc.any_text().any(check),
                Some(f) if f == TIMESTAMP_FIELD => {
                    term(doc, f, &Value::String(text.clone()), now_ms)
                }
                Some(f) => doc.values(f).any(|v| match v {
                    Value::String(s) if !f.ends_with(".keyword") => check(s),
                    other => equal(other, &Value::String(text.clone())),
                }),
            }
        }
        LogQuery::Phrase { field, text, .. } => {
            let wanted = words(text);
            let check = |haystack: &str| {
                let have = words(haystack);
                !wanted.is_empty() && have.windows(wanted.len()).any(|w| w == wanted.as_slice())
            };
            match field {
                None => doc.any_text().any(check),
                Some(f) => doc.values(f).any(|v| check(&text_of(v))),
            }
        }
        LogQuery::Range {
            field,
            lower,
            upper,
            format,
        } => {
            let in_range =
                |x: f64, lo: Option<f64>, lo_inc: bool, hi: Option<f64>, hi_inc: bool| {
                    lo.is_none_or(|l| if lo_inc { x >= l } else { x > l })
                        && hi.is_none_or(|h| if hi_inc { x <= h } else { x < h })
                };
            if field == TIMESTAMP_FIELD {
                let bound = |b: &Option<(Value, bool)>, up: bool| {
                    b.as_ref().map(|(v, inc)| {
                        let ns = datemath::resolve(v, format.as_deref(), now_ms, up == *inc)
                            .unwrap_or(0);
                        (ns as f64, *inc)
                    })
                };
                let (lo, hi) = (bound(lower, false), bound(upper, true));
                return in_range(
                    doc.doc.timestamp_ns as f64,
                    lo.map(|b| b.0),
                    lo.is_none_or(|b| b.1),
                    hi.map(|b| b.0),
                    hi.is_none_or(|b| b.1),
                );
            }
            let num = |v: &Value| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            doc.values(field).any(|v| match num(v) {
                Some(x) => in_range(
                    x,
                    lower.as_ref().and_then(|(b, _)| num(b)),
                    lower.as_ref().is_none_or(|(_, i)| *i),
                    upper.as_ref().and_then(|(b, _)| num(b)),
                    upper.as_ref().is_none_or(|(_, i)| *i),
                ),
                None => {
                    let s = text_of(v);
                    lower.as_ref().is_none_or(|(b, inc)| {
                        let b = text_of(b);
                        if *inc {
                            s >= b
                        } else {
                            s > b
                        }
                    }) && upper.as_ref().is_none_or(|(b, inc)| {
                        let b = text_of(b);
                        if *inc {
                            s <= b
                        } else {
                            s < b
                        }
                    })
                }
            })
        }
        LogQuery::Exists { field } => {
            field == TIMESTAMP_FIELD
                || doc.values(field).next().is_some()
                || doc.leaves.iter().any(|(p, _)| {
                    p.starts_with(field.as_str()) && p[field.len()..].starts_with('.')
                })
        }
        LogQuery::Prefix {
            field,
            value,
            case_insensitive,
        } => pattern(
            doc,
            field.as_deref(),
            &format!("{}.*", regex::escape(value)),
            *case_insensitive,
        ),
        LogQuery::Wildcard {
            field,
            pattern: p,
            case_insensitive,
        } => pattern(
            doc,
            field.as_deref(),
            &wildcard_to_regex(p),
            *case_insensitive,
        ),
        LogQuery::Regexp {
            field,
            pattern: p,
            case_insensitive,
        } => pattern(doc, field.as_deref(), p, *case_insensitive),
        LogQuery::Ids(ids) => ids.contains(&doc.doc.id),
        LogQuery::Bool(b) => {
            b.must.iter().all(|q| matches(q, doc, now_ms))
                && b.filter.iter().all(|q| matches(q, doc, now_ms))
                && !b.must_not.iter().any(|q| matches(q, doc, now_ms))
                && b.should.iter().filter(|q| matches(q, doc, now_ms)).count()
                    >= b.required_should()
        }
    }
}

fn term(doc: &Flat<'_>, field: &str, value: &Value, now_ms: i64) -> bool {
    match field {
        TIMESTAMP_FIELD => datemath::resolve(value, None, now_ms, false)
            .is_ok_and(|ns| ns / 1_000_000 == doc.doc.timestamp_ns / 1_000_000),
        "_index" => value.as_str() == Some(doc.doc.index.as_str()),
        "_id" => text_of(value) == doc.doc.id,
        _ => doc.values(field).any(|v| equal(v, value)),
    }
}

fn pattern(doc: &Flat<'_>, field: Option<&str>, regex: &str, case_insensitive: bool) -> bool {
    let Ok(re) = regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .case_insensitive(case_insensitive)
        .build()
    else {
        return false;
    };
    let analysed_match = |s: &str| re.is_match(s) || words(s).iter().any(|w| re.is_match(w));
    match field {
        None => doc.any_text().any(analysed_match),
        Some(f) if BODY_FIELDS.contains(&f) => doc.values(f).any(|v| analysed_match(&text_of(v))),
        Some(f) => doc.values(f).any(|v| {
            let s = text_of(v);
            re.is_match(&s)
                || (!f.ends_with(".keyword") && words(&s).iter().any(|w| re.is_match(w)))
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::query::logs::lucene;

    #[test]
    fn tail_matching() {
        let source = serde_json::json!({"message": "Disk full on /dev/sda1", "level": "error",
            "status": 507, "host": {"name": "web-01"}});
        let doc = StoredDoc {
            index: "app".into(),
            id: "1".into(),
            timestamp_ns: 1_700_000_000_000_000_000,
            source: Arc::new(source.as_object().unwrap().clone()),
        };
        let flat = Flat::new(&doc);
        let yes = |q: &str| matches(&lucene::parse(q, &[], false).unwrap(), &flat, 0);
        assert!(yes("disk"));
        assert!(yes("message:\"disk full\""));
        assert!(!yes("message:\"full disk\""));
        assert!(yes("level:error AND status:[500 TO 599]"));
        assert!(yes("host.name:web-01"));
        assert!(yes("host.name.keyword:web-01"));
        assert!(yes("host.name:web*"));
        assert!(yes("_exists_:host"));
        assert!(!yes("level:warn"));
        assert!(yes("-level:warn"));
        assert!(yes("status:>500"));
    }
}

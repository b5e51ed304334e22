//! Search-hit highlighting (`"highlight"` in `_search`), as Grafana's logs
//! query asks for it: every string field of a hit's `_source` that a query
//! term matches, the matching words wrapped in `pre_tags`/`post_tags`.
//!
//! Terms come from the query's positive clauses (`must`, `filter`,
//! `should`; not `must_not`): words of `match`/`match_phrase`/query-string
//! terms, whole values of `term`/`terms`, and prefix, wildcard and regexp
//! patterns tried on each word. A term on a field highlights that field
//! only (`require_field_match`); a term without one (a query string over
//! every field) highlights wherever it matches. Words are split as the log
//! store's analyser splits them (runs of letters and digits, compared in
//! lower case).

use serde_json::{Map, Value};

use super::ast::LogQuery;
use super::matcher::words;
use super::QueryError;

/// Most terms taken from one query (more are not highlighted).
const MAX_TERMS: usize = 256;
/// Longest value highlighted, in bytes (longer values are left out, as
/// Elasticsearch's `index.highlight.max_analyzed_offset` does).
const MAX_ANALYZED: usize = 1_000_000;

/// The `highlight` section of a search request.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub fields: Vec<String>,
    pub pre_tag: String,
    pub post_tag: String,
    pub fragment_size: usize,
    pub number_of_fragments: usize,
    pub require_field_match: bool,
}

fn first_tag(value: Option<&Value>, default: &str) -> Result<String, QueryError> {
    match value {
        None => Ok(default.to_owned()),
        Some(Value::Array(tags)) => Ok(tags
            .first()
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()),
        Some(Value::String(tag)) => Ok(tag.clone()),
        Some(other) => Err(QueryError::parsing(format!(
            "[highlight] tags must be an array of strings, got {other}"
        ))),
    }
}

fn count(value: Option<&Value>, key: &str, default: usize) -> Result<usize, QueryError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                QueryError::parsing(format!(
                    "[highlight] [{key}] must be a non-negative integer, got {v}"
                ))
            }),
    }
}

/// Parse a `highlight` object.
pub fn parse(value: &Value) -> Result<Spec, QueryError> {
    let object = value
        .as_object()
        .ok_or_else(|| QueryError::parsing("[highlight] must be an object"))?;
    let mut fields = Vec::new();
    match object.get("fields") {
        Some(Value::Object(map)) => fields.extend(map.keys().cloned()),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Object(map) => fields.extend(map.keys().cloned()),
                    Value::String(name) => fields.push(name.clone()),
                    _ => {}
                }
            }
        }
        None => {}
        Some(other) => {
            return Err(QueryError::parsing(format!(
                "[highlight] [fields] must be an object or an array, got {other}"
            )))
        }
    }
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "fields"
                | "pre_tags"
                | "post_tags"
                | "fragment_size"
                | "number_of_fragments"
                | "require_field_match"
                | "type"
                | "encoder"
                | "order"
                | "boundary_scanner"
                | "max_analyzed_offset"
                | "no_match_size"
                | "tags_schema"
                | "highlight_query"
                | "fragmenter"
        ) {
            return Err(QueryError::parsing(format!(
                "[highlight] unknown field [{key}]"
            )));
        }
    }
    Ok(Spec {
        fields,
        pre_tag: first_tag(object.get("pre_tags"), "<em>")?,
        post_tag: first_tag(object.get("post_tags"), "</em>")?,
        fragment_size: count(object.get("fragment_size"), "fragment_size", 100)?,
        number_of_fragments: count(object.get("number_of_fragments"), "number_of_fragments", 5)?,
        require_field_match: object
            .get("require_field_match")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

#[derive(Debug)]
enum Matcher {
    /// A lower-case word.
    Word(String),
    /// A whole value, exactly.
    Exact(String),
    /// A pattern over words (and whole values).
    Pattern(regex::Regex),
}

/// A term to highlight, on a field or (`None`) on any.
#[derive(Debug)]
pub struct Term {
    field: Option<String>,
    matcher: Matcher,
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn pattern(regex: &str, case_insensitive: bool) -> Option<regex::Regex> {
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .build()
        .ok()
}

fn wildcard_regex(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out
}

/// The terms of `query` worth highlighting.
pub fn terms(query: &LogQuery) -> Vec<Term> {
    let mut out = Vec::new();
    collect(query, &mut out);
    out.truncate(MAX_TERMS);
    out
}

fn collect(query: &LogQuery, out: &mut Vec<Term>) {
    if out.len() >= MAX_TERMS {
        return;
    }
    let field_of = |f: &str| Some(f.strip_suffix(".keyword").unwrap_or(f).to_owned());
    match query {
        LogQuery::Term { field, value } => {
            if let Some(text) = scalar_text(value) {
                out.push(Term {
                    field: field_of(field),
                    matcher: Matcher::Exact(text.clone()),
                });
                for word in words(&text) {
                    out.push(Term {
                        field: field_of(field),
                        matcher: Matcher::Word(word),
                    });
                }
            }
        }
        LogQuery::Terms { field, values } => {
            for value in values.iter().filter_map(scalar_text) {
                out.push(Term {
                    field: field_of(field),
                    matcher: Matcher::Exact(value),
                });
            }
        }
        LogQuery::Match { field, text, .. } | LogQuery::Phrase { field, text, .. } => {
            for word in words(text) {
                out.push(Term {
                    field: field.as_deref().and_then(field_of),
                    matcher: Matcher::Word(word),
                });
            }
        }
        LogQuery::Prefix {
            field,
            value,
            case_insensitive,
        } => {
            if let Some(re) = pattern(&format!("{}.*", regex::escape(value)), *case_insensitive) {
                out.push(Term {
                    field: field.as_deref().and_then(field_of),
                    matcher: Matcher::Pattern(re),
                });
            }
        }
        LogQuery::Wildcard {
            field,
            pattern: wildcard,
            case_insensitive,
        } => {
            // `*` alone matches everything: nothing to show.
            if wildcard.chars().all(|c| c == '*') {
                return;
            }
            if let Some(re) = pattern(&wildcard_regex(wildcard), *case_insensitive) {
                out.push(Term {
                    field: field.as_deref().and_then(field_of),
                    matcher: Matcher::Pattern(re),
                });
            }
        }
        LogQuery::Regexp {
            field,
            pattern: regexp,
            case_insensitive,
        } => {
            if let Some(re) = pattern(regexp, *case_insensitive) {
                out.push(Term {
                    field: field.as_deref().and_then(field_of),
                    matcher: Matcher::Pattern(re),
                });
            }
        }
        LogQuery::Bool(b) => {
            for clause in b.must.iter().chain(&b.filter).chain(&b.should) {
                collect(clause, out);
            }
        }
        _ => {}
    }
}

/// The `highlight` of one hit, or `None` when nothing matched.
pub fn highlight(source: &Value, spec: &Spec, terms: &[Term]) -> Option<Map<String, Value>> {
    if terms.is_empty() {
        return None;
    }
    let mut leaves = Vec::new();
    flatten(String::new(), source, &mut leaves);
    let mut out = Map::new();
    for (path, text) in leaves {
        if text.len() > MAX_ANALYZED
            || !spec
                .fields
                .iter()
                .any(|p| super::catalog_glob(p.strip_suffix(".keyword").unwrap_or(p), &path))
        {
            continue;
        }
        let applicable: Vec<&Term> = terms
            .iter()
            .filter(|t| match &t.field {
                None => true,
                Some(f) => !spec.require_field_match || super::catalog_glob(f, &path),
            })
            .collect();
        if applicable.is_empty() {
            continue;
        }
        if let Some(fragments) = mark(text, &applicable, spec) {
            let entry = out.entry(path).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                items.extend(fragments.into_iter().map(Value::String));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn flatten<'a>(path: String, value: &'a Value, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(child, v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten(path.clone(), item, out);
            }
        }
        Value::String(s) => out.push((path, s)),
        _ => {}
    }
}

/// `text` with matching words tagged, cut into fragments; `None` when no
/// term matches.
fn mark(text: &str, terms: &[&Term], spec: &Spec) -> Option<Vec<String>> {
    // Byte ranges of the matches.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let whole = terms.iter().any(|t| match &t.matcher {
        Matcher::Exact(value) => value == text,
        Matcher::Pattern(re) => re.is_match(text) && words(text).len() > 1,
        Matcher::Word(_) => false,
    });
    if whole {
        spans.push((0, text.len()));
    } else {
        let mut start = None;
        let check = |from: usize, to: usize, spans: &mut Vec<(usize, usize)>| {
            let word = text[from..to].to_lowercase();
            let hit = terms.iter().any(|t| match &t.matcher {
                Matcher::Word(w) => *w == word,
                Matcher::Exact(value) => *value == text[from..to],
                Matcher::Pattern(re) => re.is_match(&text[from..to]) || re.is_match(&word),
            });
            if hit {
                spans.push((from, to));
            }
        };
        for (i, c) in text.char_indices() {
            match (c.is_alphanumeric(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    check(s, i, &mut spans);
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            check(s, text.len(), &mut spans);
        }
    }
    if spans.is_empty() {
        return None;
    }
    let tag = |from: usize, to: usize| -> String {
        let mut out = String::new();
        let mut at = from;
        for &(s, e) in spans.iter().filter(|(s, e)| *s >= from && *e <= to) {
            out.push_str(&text[at..s]);
            out.push_str(&spec.pre_tag);
            out.push_str(&text[s..e]);
            out.push_str(&spec.post_tag);
            at = e;
        }
        out.push_str(&text[at..to]);
        out
    };
    let chars = text.chars().count();
    if spec.number_of_fragments == 0 || chars <= spec.fragment_size {
        return Some(vec![tag(0, text.len())]);
    }
    // Fragments of about `fragment_size` characters around the first
    // matches, in text order, not overlapping.
    let mut fragments = Vec::new();
    let mut covered = 0usize;
    for &(s, e) in &spans {
        if fragments.len() >= spec.number_of_fragments {
            break;
        }
        if s < covered {
            continue;
        }
        let span_chars = text[s..e].chars().count();
        let before = spec.fragment_size.saturating_sub(span_chars) / 2;
        let mut from = s;
        for (n, (i, _)) in text[..s].char_indices().rev().enumerate() {
            if n >= before || i < covered {
                break;
            }
            from = i;
        }
        let mut to = e;
        let already = text[from..e].chars().count();
        for (taken, (i, c)) in (already..).zip(text[e..].char_indices()) {
            if taken >= spec.fragment_size {
                break;
            }
            to = e + i + c.len_utf8();
        }
        // Do not cut through a match.
        if let Some(&(_, end)) = spans.iter().find(|(ms, me)| *ms < to && *me > to) {
            to = end;
        }
        fragments.push(tag(from, to));
        covered = to;
    }
    Some(fragments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logs::lucene;
    use serde_json::json;

    fn spec() -> Spec {
        parse(&json!({"fields": {"*": {}}, "pre_tags": ["@HIGHLIGHT@"], "post_tags": ["@/HIGHLIGHT@"], "fragment_size": 2147483647})).unwrap()
    }

    #[test]
    fn grafana_logs_highlighting() {
        let query = lucene::parse("error AND level:warn* AND NOT secret", &[], false).unwrap();
        let source = json!({"message": "Error: disk error on /dev/sda (secret)", "level": "warning",
            "host": {"name": "error-host"}, "code": 500});
        let got = highlight(&source, &spec(), &terms(&query)).unwrap();
        assert_eq!(
            got["message"],
            json!(["@HIGHLIGHT@Error@/HIGHLIGHT@: disk @HIGHLIGHT@error@/HIGHLIGHT@ on /dev/sda (secret)"])
        );
        assert_eq!(got["level"], json!(["@HIGHLIGHT@warning@/HIGHLIGHT@"]));
        assert_eq!(
            got["host.name"],
            json!(["@HIGHLIGHT@error@/HIGHLIGHT@-host"])
        );
        assert!(got.get("code").is_none());
        // A field-specific term highlights its own field only.
        let query = lucene::parse("host.name:host", &[], false).unwrap();
        let got = highlight(&source, &spec(), &terms(&query)).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        // match_all highlights nothing.
        assert!(highlight(&source, &spec(), &terms(&LogQuery::All)).is_none());
    }

    #[test]
    fn fragments_and_refusals() {
        let mut s = spec();
        s.fragment_size = 12;
        s.number_of_fragments = 2;
        let text = format!(
            "{} needle {} needle {} needle",
            "a".repeat(30),
            "b".repeat(30),
            "c".repeat(30)
        );
        let query = lucene::parse("needle", &[], false).unwrap();
        let got = highlight(&json!({"m": text}), &s, &terms(&query)).unwrap();
        let fragments = got["m"].as_array().unwrap();
        assert_eq!(fragments.len(), 2);
        assert!(fragments[0]
            .as_str()
            .unwrap()
            .contains("@HIGHLIGHT@needle@/HIGHLIGHT@"));
        assert!(parse(&json!({"fields": 3})).is_err());
        assert!(parse(&json!({"fields": {"*": {}}, "fragment_size": -1})).is_err());
        assert!(parse(&json!({"bogus": 1}))
            .unwrap_err()
            .reason
            .contains("bogus"));
    }
}
